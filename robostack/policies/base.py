"""The inference contract every policy family follows, and the spec each policy carries with it.

Timing, with T_o = n_obs_steps, T_a = n_action_steps, T_p = horizon (T_o=2, T_a=8, T_p=16 by default)::

    observations     o(t-1) o(t)
    predicted chunk  a(t-1) a(t) a(t+1) ... a(t+14)          T_p actions
    executed               a(t) ... a(t+7)                   pred[:, T_o-1 : T_o-1+T_a]

``predict_chunk(obs)`` maps raw (un-normalised) observation histories (B, T_o, ...) to the executed chunk
(B, T_a, Da) in raw action units, clipped to the action bounds. ``select_action(obs)`` is the stateful wrapper a
control loop calls once per step: it owns the observation history and the action queue.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from robostack.data.schema import FeatureSpec
from robostack.errors import RobostackError, SpecError
from robostack.policies.stepper import ChunkStepper


@dataclass
class PolicyConfig:
    """Fields every policy family shares (names follow Diffusion Policy)."""

    type: str = ""
    """Registered family name (``robostack.policies.registry``); each family's config sets its own."""
    horizon: int = 16
    """T_p: predicted actions per chunk."""
    n_obs_steps: int = 2
    """T_o: observation frames the policy conditions on."""
    n_action_steps: int = 8
    """T_a: actions executed per chunk before re-planning."""
    obs_keys: list[str] = field(default_factory=list)
    """Store keys the policy observes (``obs/...``); empty = every ``obs/`` key of the training data."""

    def __post_init__(self) -> None:
        if not 1 <= self.n_obs_steps <= self.horizon:
            raise RobostackError(f"need 1 <= n_obs_steps ({self.n_obs_steps}) <= horizon ({self.horizon})")
        if not 1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1:
            raise RobostackError(
                f"n_action_steps ({self.n_action_steps}) must be in [1, horizon - n_obs_steps + 1 = "
                f"{self.horizon - self.n_obs_steps + 1}]"
            )


@dataclass
class PolicySpec:
    """What a policy consumes and produces; saved with it and checked against every caller."""

    obs: dict[str, FeatureSpec]
    action: FeatureSpec
    action_low: list[float]
    action_high: list[float]
    control_rate_hz: float

    def to_json(self) -> dict[str, Any]:
        return {
            "obs": {k: v.to_json() for k, v in self.obs.items()},
            "action": self.action.to_json(),
            "action_low": list(self.action_low),
            "action_high": list(self.action_high),
            "control_rate_hz": self.control_rate_hz,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PolicySpec:
        return cls(
            obs={k: FeatureSpec.from_json(v) for k, v in d["obs"].items()},
            action=FeatureSpec.from_json(d["action"]),
            action_low=list(d["action_low"]),
            action_high=list(d["action_high"]),
            control_rate_hz=float(d["control_rate_hz"]),
        )

    def check_obs(self, obs: dict[str, Any], batched: bool) -> None:
        """Keys, per-step shapes, dtypes and finiteness against the spec; errors name the offending key.

        Runs on every control step, so it is written for small arrays (a few microseconds per key)."""
        for k, spec in self.obs.items():
            arr = obs.get(k)
            if arr is None:
                raise SpecError(f"observation is missing key '{k}' (policy needs {', '.join(self.obs)})")
            got = tuple(arr.shape[2:] if batched else arr.shape)
            if got != tuple(spec.shape):
                raise SpecError(
                    f"observation '{k}' has per-step shape {got}, the policy expects {spec.shape}"
                )
            kind = _dtype_kind(arr)
            if spec.dtype == "uint8":
                if kind != "uint8":
                    raise SpecError(f"observation '{k}' must be uint8 (a camera image), got {kind}")
            elif kind == "float":
                finite = (
                    torch.isfinite(arr).all() if isinstance(arr, torch.Tensor) else np.isfinite(arr).all()
                )
                if not finite:
                    raise SpecError(f"observation '{k}' holds NaN or Inf")
            elif kind not in ("int", "uint8"):
                raise SpecError(f"observation '{k}' must be numeric ({spec.dtype}), got {kind}")

    @property
    def image_keys(self) -> dict[str, int]:
        return {k: v.shape[0] for k, v in self.obs.items() if v.dtype == "uint8" and len(v.shape) == 3}

    @property
    def lowdim_keys(self) -> list[str]:
        return [k for k in self.obs if k not in self.image_keys]


def _dtype_kind(arr: Any) -> str:
    """'float', 'int', 'uint8', 'bool' or the dtype's name, for numpy arrays and torch tensors alike."""
    dt = arr.dtype
    if isinstance(dt, np.dtype):
        kind = dt.kind
        if kind == "f":
            return "float"
        if dt == np.uint8:
            return "uint8"
        return {"i": "int", "u": "int", "b": "bool"}.get(kind, str(dt))
    if dt == torch.uint8:
        return "uint8"
    return "float" if dt.is_floating_point else ("bool" if dt == torch.bool else "int")


class Policy(nn.Module, ABC):
    """Base class: spec checks, the history/queue wrapper, and the interface the trainer and evaluator use."""

    config: PolicyConfig
    family: ClassVar[str] = ""
    """Registered name, set by ``register_policy``."""
    extra_outputs: ClassVar[tuple[str, ...]] = ()
    """Names of outputs an exported graph returns after the action (e.g. FamO2O's beta), for logging; runtimes read
    the action by name and ignore them."""
    trainable: ClassVar[bool] = True
    """False for families built from other trained policies (``composed``): ``robostack train`` does not offer them."""
    takes_noise: ClassVar[bool] = True
    """The sampler starts from a noise sample of ``noise_shape`` per batch element, which exported graphs take as an
    input (so a model and its PyTorch policy can be compared exactly); False for one-shot policies."""

    def __init__(self, config: PolicyConfig, spec: PolicySpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.register_buffer("action_low", torch.tensor(spec.action_low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(spec.action_high, dtype=torch.float32))
        self._stepper = ChunkStepper(config.n_obs_steps)

    @property
    def normalizer(self) -> nn.Module:
        """The statistics live once, inside the observation encoder (shared tensors break safetensors)."""
        return self.encoder.normalizer  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ training
    def window_horizon(self) -> int:
        """Length of the training windows this policy needs (actions per window)."""
        return self.config.horizon

    @abstractmethod
    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, metrics) on a batch of windows: obs keys (B, T_o, ...), ``action`` (B, T_p, Da), raw units. The
        metrics are detached scalar tensors (reading them as floats would synchronise a GPU every step)."""

    # ------------------------------------------------------------------ inference
    @abstractmethod
    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Raw obs histories (B, T_o, ...) -> executed actions (B, T_a, Da), raw units, within the bounds.

        ``noise`` (B, T_p, Da) fixes the sampler's start (exported graphs take it as an input); ``num_steps``
        overrides the configured number of denoising/integration steps (ignored by one-shot policies)."""

    @property
    def noise_shape(self) -> tuple[int, int]:
        """Per-sample shape of the sampler's starting noise: the whole predicted chunk (T_p, Da)."""
        return self.config.horizon, self.spec.action.shape[0]

    @property
    def num_steps(self) -> int:
        """Network evaluations per chunk as configured (denoising or integration steps); 0 for one-shot policies."""
        return 0

    def check_num_steps(self, n: int) -> int:
        """``n`` if this policy can sample with ``n`` steps, else a RobostackError saying what it accepts."""
        raise RobostackError(f"a {self.family} policy has no denoising or integration steps")

    def set_num_steps(self, n: int) -> None:
        """Sample with ``n`` steps from now on (an inference-time choice, no retraining)."""
        self.check_num_steps(n)

    def export_graph(self, keys: list[str], steps: int | None) -> nn.Module:
        """The module ``robostack export`` traces: positional inputs (the ``keys`` histories, then the noise where
        the policy takes it) -> the executed chunk, ``steps`` sampler steps unrolled (None: the configured ones)."""
        from robostack.policies.graph import ChunkGraph

        return ChunkGraph(self, keys, steps)

    def check_obs(self, obs: dict[str, Any], batched: bool) -> None:
        self.spec.check_obs(obs, batched)

    def frames(self, obs: dict[str, torch.Tensor], first: bool = False) -> dict[str, torch.Tensor]:
        """The T_o frames the policy conditions on: the first of a training window, else the latest.

        A history of exactly T_o frames is passed through untouched (no slice op in an exported graph)."""
        n = self.config.n_obs_steps
        out = {}
        for k in self.spec.obs:
            x = obs[k]
            out[k] = x if x.shape[1] == n else (x[:, :n] if first else x[:, -n:])
        return out

    def set_n_action_steps(self, n: int) -> None:
        """Execute ``n`` actions per chunk before re-planning (an inference-time choice, no retraining)."""
        most = self.window_horizon() - self.config.n_obs_steps + 1
        if not 1 <= n <= most:
            raise RobostackError(f"n_action_steps must be in [1, {most}] for this policy, got {n}")
        self.config.n_action_steps = n

    def clip_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    def drop_pending(self) -> None:
        """Discard the planned actions but keep the observation history (see ``ChunkStepper.drop_pending``)."""
        self._stepper.drop_pending()

    def pending_actions(self) -> list[np.ndarray]:
        """Actions planned but not yet returned by ``select_action``."""
        return self._stepper.pending()

    @property
    def will_plan(self) -> bool:
        """True when the next ``select_action`` runs the network (its action queue is empty)."""
        return self._stepper.will_plan

    def reset(self) -> None:
        self._stepper.reset()

    @torch.no_grad()
    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One control step: remember ``obs``, re-plan when the action queue is empty, return the next action."""
        self.check_obs(obs, batched=False)
        return self._stepper.step({k: np.asarray(obs[k]) for k in self.spec.obs}, self._plan)

    def _plan(self, history: dict[str, np.ndarray]) -> np.ndarray:
        device = self.action_low.device
        batch = {k: torch.as_tensor(v).to(device) for k, v in history.items()}
        return self.predict_chunk(batch)[0].cpu().numpy()
