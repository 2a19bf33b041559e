"""Behaviour cloning: any registered policy family trained on a store by its own loss.

store -> RAM buffer -> windows -> ``policy.compute_loss`` -> AdamW + warm-up/cosine -> EMA -> checkpoints
(safetensors + resolved config + statistics + data fingerprint) -> periodic evaluation in simulation.
Several processes through ``torchrun``: one per rank, DDP-averaged gradients, rank 0 writes.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.registry import register_algorithm
from robostack.data.buffer import EpisodeFilter
from robostack.data.sampler import SequenceSampler
from robostack.errors import RobostackError
from robostack.policies.base import Policy
from robostack.policies.checkpoint import build_policy, save_policy
from robostack.policies.unet1d import store_conv_weights_channels_last
from robostack.train.adamw import SharedStepAdamW
from robostack.train.compiled import compile_for_training
from robostack.train.config import TrainConfig
from robostack.train.data import (
    TrainingData,
    data_fingerprint,
    load_store_for_policy,
    policy_windows,
    to_tensors,
    validation_mask,
)
from robostack.train.distributed import Ranks, barrier, record_ranks_in_sync, setup_distributed
from robostack.train.hooks import default_task, evaluate_checkpoint, validation_loss
from robostack.train.optim import EMAUpdater, optimizer_step, warmup_cosine
from robostack.train.run_log import RunLog, recorded_train_seconds, write_run_files
from robostack.train.state import checkpoint_folder, load_train_state, mark_last, save_train_state
from robostack.utils.generators import drain, pause_point


def bc_loss(policy: Policy, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The family's own imitation loss (denoising error, flow-matching error, negative log-likelihood)."""
    return policy.compute_loss(batch)


class _LossModule(torch.nn.Module):
    """What DDP and torch.compile wrap: ``forward`` is the loss."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        return bc_loss(self.policy, batch)


class BehaviourCloning:
    """The policy, its EMA copy, the optimiser and schedule; ``update(batch, step)`` is one optimisation step."""

    def __init__(self, cfg: TrainConfig, data: TrainingData, ranks: Ranks) -> None:
        self.cfg = cfg
        policy = build_policy(
            cfg.policy["type"], {**cfg.policy, "obs_keys": data.obs_keys}, data.spec, data.stats
        )
        self.policy = policy.to(ranks.device)
        self.single_cpu_compiled = cfg.compile and ranks.device.type == "cpu" and ranks.world == 1
        if self.single_cpu_compiled:
            # before the EMA copy and the optimiser state, so that both take the same strides
            store_conv_weights_channels_last(self.policy)
        self.ema = copy.deepcopy(self.policy).requires_grad_(False) if cfg.ema.enabled else None
        self.ema_updater = (
            EMAUpdater(self.ema, self.policy, cfg.ema.power, cfg.ema.max_decay)
            if self.ema is not None
            else None
        )
        # torch's fused AdamW with one step counter for all parameters instead of one each
        self.opt = SharedStepAdamW(
            self.policy.parameters(),
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            weight_decay=cfg.optim.weight_decay,
        )
        self.sched = warmup_cosine(self.opt, cfg.optim.warmup_steps, cfg.steps)
        self.loss_fn: torch.nn.Module = _LossModule(self.policy)

    @property
    def shipped(self) -> Policy:
        """The weights a checkpoint ships: the EMA's where it is kept."""
        return self.ema if self.ema is not None else self.policy

    def state_objects(self) -> dict[str, Any]:
        return {"model": self.policy, "ema": self.ema, "optimizer": self.opt, "scheduler": self.sched}

    def wrap(self, world: int) -> None:
        """DDP across ranks, then torch.compile: after any resume, which loads into the unwrapped modules."""
        if world > 1:
            self.loss_fn = torch.nn.parallel.DistributedDataParallel(self.loss_fn)
        if self.cfg.compile:
            self.loss_fn = compile_for_training(self.loss_fn)

    def update(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        loss, _ = self.loss_fn(batch)
        optimizer_step(loss, self.opt, self.sched, self.policy.parameters(), self.cfg.optim.grad_clip)
        if self.ema_updater is not None:
            self.ema_updater.update(step)
        return loss


@register_algorithm("bc", "train", TrainConfig, "behaviour cloning of any policy family on a store")
def train(cfg: TrainConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg`` into the run folder ``out`` (or continue it with ``resume``); returns the folder."""
    return drain(iter_train(cfg, out, resume, progress))


def iter_train(
    cfg: TrainConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Generator[int, None, Path]:
    """``train`` one optimisation step at a time: yields the number of steps done after each one and returns the
    run folder. Time spent suspended at a ``yield`` is not training time: the recorded ``train_s`` and samples/s
    leave it out, so a benchmark can alternate two trainings in one process and time each fairly."""
    ranks = setup_distributed(cfg.device)
    run = Path(out)
    if (run / "config.yaml").exists() and not resume:
        raise RobostackError(
            f"{run}: a run already exists here (pass --resume to continue it, or another --out)"
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed + ranks.rank)
    if not cfg.data.path:
        raise RobostackError("data.path is required (--data PATH.zarr)")
    data = load_store_for_policy(
        cfg.data.path,
        cfg.policy.get("obs_keys"),
        EpisodeFilter(success=True if cfg.data.success_only else None, max_episodes=cfg.data.max_episodes),
        cfg.data.action_stats,
    )
    bc = BehaviourCloning(cfg, data, ranks)
    rng = np.random.default_rng([cfg.seed, ranks.rank])
    mask = validation_mask(data.buffer.n_episodes, cfg.data.val_fraction, cfg.seed)
    train_windows, val_windows = policy_windows(data.buffer, bc.policy, data.obs_keys, mask)
    start = load_train_state(run, bc.state_objects(), rng) if resume else 0
    bc.wrap(ranks.world)
    fingerprint = data_fingerprint(data.store, [e.index for e in data.buffer.episodes])
    if ranks.is_main:
        write_run_files(run, cfg, fingerprint)
    log = RunLog(run, ranks.is_main, cfg.steps, start, f"train {cfg.policy['type']}", progress)
    hooks = _Hooks(cfg, run, bc, rng, data, ranks, log, val_windows, fingerprint, start)
    bc.policy.train()
    for step in range(start, cfg.steps):
        loss = bc.update(
            to_tensors(train_windows.random_batch(cfg.optim.batch_size, rng), ranks.device), step
        )
        hooks.after_step(step + 1, loss)
        hooks.paused += yield from pause_point(step + 1, ranks.device)
    if ranks.world > 1:
        record_ranks_in_sync(run, list(bc.policy.parameters()), ranks)
    log.close()
    barrier(ranks)
    return run


@dataclass
class _Hooks:
    """What runs after each step on the main rank: logging (with the held-out loss), checkpoints, evaluation."""

    cfg: TrainConfig
    run: Path
    bc: BehaviourCloning
    rng: np.random.Generator
    data: TrainingData
    ranks: Ranks
    log: RunLog
    val_windows: SequenceSampler | None
    fingerprint: dict[str, Any]
    start: int
    paused: float = 0.0
    """Seconds spent suspended at the loop's yields (not training time)."""

    def __post_init__(self) -> None:
        self.eval_task = self.cfg.eval.task or default_task(self.data.store)
        self.extra = {"data": self.fingerprint, "train_config": asdict(self.cfg)}
        self.t0, self.samples = time.perf_counter(), 0
        # wall time of the optimisation loop, carried across --resume so a run folder says what it cost in total
        self.prior_s = recorded_train_seconds(self.run) if self.start else 0.0

    def after_step(self, done: int, loss: torch.Tensor) -> None:
        cfg = self.cfg
        self.samples += cfg.optim.batch_size * self.ranks.world
        self.log.bar.update(1)
        last = done == cfg.steps
        want_val = self.val_windows is not None and (done % cfg.val_every == 0 or last)
        if self.ranks.is_main and (done % cfg.log_every == 0 or last or want_val):
            self._log(done, loss, want_val)
        do_eval = self.eval_task and ((cfg.eval.every and done % cfg.eval.every == 0) or last)
        if self.ranks.is_main and (done % cfg.save_every == 0 or last or do_eval):
            ckpt = save_checkpoint(self.run, done, self.bc, self.rng, self.data, self.extra)
            if do_eval and cfg.eval.episodes > 0:
                ev = cfg.eval
                result = evaluate_checkpoint(ckpt, self.eval_task, ev.episodes, ev.workers, ev.seed)
                self.log.log({"step": done, "success_rate": result["success_rate"]})

    def _log(self, done: int, loss: torch.Tensor, want_val: bool) -> None:
        ran_s = time.perf_counter() - self.t0 - self.paused
        record = {
            "step": done,
            "loss": float(loss.detach()),
            "lr": self.bc.sched.get_last_lr()[0],
            "samples_per_s": self.samples / ran_s,
            "train_s": self.prior_s + ran_s,
        }
        if want_val:
            batch, device, seed = self.cfg.optim.batch_size, self.ranks.device, self.cfg.seed
            record["val_loss"] = validation_loss(self.bc.shipped, self.val_windows, batch, device, seed)
        self.log.bar.set_postfix(loss=f"{record['loss']:.4f}")
        self.log.log(record)


def save_checkpoint(
    run: Path, step: int, bc: BehaviourCloning, rng: np.random.Generator, data: TrainingData, extra: dict
) -> Path:
    """The shipped policy folder of ``step`` with the full training state beside it, then ``last`` moves to it."""
    folder = checkpoint_folder(run, step)
    save_policy(bc.shipped, folder, data.stats, {"step": step, **extra})
    save_train_state(folder, step, bc.state_objects(), rng)
    mark_last(run, folder)
    return folder
