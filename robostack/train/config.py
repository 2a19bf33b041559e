"""The training run's typed config; the resolved file is saved as ``<run>/config.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robostack.errors import RobostackError


@dataclass
class DataConfig:
    path: str = ""
    """Episode store to train on."""
    success_only: bool = True
    """Train on successful episodes only (behaviour cloning wants good demonstrations)."""
    max_episodes: int | None = None
    """Use at most this many episodes (after filtering), in store order."""
    val_fraction: float = 0.05
    """Share of episodes held out for the validation loss (split per episode, seeded)."""
    action_stats: str = "data"
    """Action normalisation range: ``data`` (min/max of the demonstrated actions, Diffusion Policy's default) or
    ``bounds`` (the task's action bounds): policies trained on different data share ``bounds``, so they can be
    composed (GPC) on one noisy action sample."""

    def __post_init__(self) -> None:
        if self.action_stats not in ("data", "bounds"):
            raise RobostackError(f"data.action_stats must be 'data' or 'bounds', got '{self.action_stats}'")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.95, 0.999])
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    """Linear warm-up, then cosine decay to 0 at the last step (Diffusion Policy's schedule)."""
    batch_size: int = 64
    grad_clip: float = 0.0
    """Global gradient-norm clip; 0 disables it."""


@dataclass
class EMAConfig:
    enabled: bool = True
    power: float = 0.75
    """decay = 1 - (1 + step) ** -power, capped at max_decay (Diffusion Policy's EMAModel)."""
    max_decay: float = 0.9999


@dataclass
class EvalConfig:
    task: str = ""
    """Simulated task to evaluate on; empty = the task the training data was recorded on (if it is a sim task)."""
    every: int = 0
    """Evaluate every N steps during training (0: only after the last step)."""
    episodes: int = 10
    workers: int = 1
    seed: int = 100_000
    """First evaluation seed; far from demo-generation seeds so evaluation episodes are unseen."""


@dataclass
class TrainConfig:
    policy: dict[str, Any] = field(default_factory=dict)
    """Policy-family config (``type`` plus the family's fields, see ``robostack.policies.*Config``)."""
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    steps: int = 5000
    """Optimiser steps."""
    seed: int = 0
    device: str = "cpu"
    """cpu | cuda | cuda:N."""
    log_every: int = 50
    val_every: int = 500
    """Steps between validation losses (4 held-out batches, and at the last step); each costs four eager forward
    passes, so it is kept rare."""
    save_every: int = 1000
    num_threads: int = 0
    """torch CPU threads (0: torch's default)."""
    compile: bool = False
    """torch.compile the training loss (forward and backward fused by Inductor): a one-off compile of minutes, then
    faster steps, so it pays off from a few thousand steps; off by default because short runs and tests would spend
    most of their time compiling."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise RobostackError("steps must be at least 1")
        if self.val_every < 1 or self.log_every < 1 or self.save_every < 1:
            raise RobostackError("log_every, val_every and save_every must be at least 1")
        if not self.policy.get("type"):
            raise RobostackError("policy.type is required (diffusion | flow | gaussian)")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise RobostackError(f"unknown device '{self.device}' (cpu | cuda | cuda:N)")
