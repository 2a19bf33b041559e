"""What every runtime backend shares: the per-step ``select_action`` over ``predict_chunk``, the executed chunk
length, and a valid example input. Subclasses set ``spec``, ``n_obs_steps`` and the chunk length, and implement
``predict_chunk`` (numpy histories in, (B, T_a, Da) actions out) and ``seed``."""

from __future__ import annotations

from typing import Any

import numpy as np

from robostack.errors import RobostackError
from robostack.policies.base import PolicySpec
from robostack.policies.stepper import ChunkStepper


class RuntimePolicy:
    spec: PolicySpec
    n_obs_steps: int

    def _init_contract(self, spec: PolicySpec, n_obs_steps: int, n_action_steps: int) -> None:
        self.spec = spec
        self.n_obs_steps = n_obs_steps
        self._chunk_len = n_action_steps
        self.n_action_steps = n_action_steps
        self._stepper = ChunkStepper(n_obs_steps)

    def predict_chunk(self, obs: dict[str, Any], noise: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def set_n_action_steps(self, n: int) -> None:
        """Execute only the first ``n`` actions of each chunk (the chunk length itself is fixed)."""
        if not 1 <= n <= self._chunk_len:
            raise RobostackError(f"n_action_steps must be in [1, {self._chunk_len}] for this model, got {n}")
        self.n_action_steps = n

    def reset(self) -> None:
        self._stepper.reset()

    def drop_pending(self) -> None:
        """Discard the planned actions but keep the observation history (see ``ChunkStepper.drop_pending``)."""
        self._stepper.drop_pending()

    def pending_actions(self) -> list[np.ndarray]:
        """Actions planned but not yet returned by ``select_action``."""
        return self._stepper.pending()

    @property
    def will_plan(self) -> bool:
        return self._stepper.will_plan

    def select_action(self, obs: dict[str, Any]) -> np.ndarray:
        self.spec.check_obs(obs, batched=False)
        frame = {k: np.asarray(obs[k]) for k in self.spec.obs}
        return self._stepper.step(frame, lambda h: self.predict_chunk(h)[0][: self.n_action_steps])

    def example_obs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """A valid observation history (zeros / mid-grey images) for warm-up and benchmarks."""
        out = {}
        for k, spec in self.spec.obs.items():
            shape = (batch, self.n_obs_steps, *spec.shape)
            out[k] = np.full(shape, 128, np.uint8) if spec.dtype == "uint8" else np.zeros(shape, np.float32)
        return out
