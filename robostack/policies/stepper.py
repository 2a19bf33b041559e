"""The per-step wrapper every policy backend shares: observation history in, one action out.

A chunking policy plans ``n_action_steps`` actions from the last ``n_obs_steps`` frames; the control loop wants one
action per call. ``ChunkStepper`` owns the history (padded with the first frame after a reset, as in training) and
the queue of planned actions, so the PyTorch policies and the exported-model runtime behave identically.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np

Frame = dict[str, np.ndarray]


class ChunkStepper:
    def __init__(self, n_obs_steps: int) -> None:
        self.n_obs_steps = n_obs_steps
        self._history: collections.deque[Frame] = collections.deque(maxlen=n_obs_steps)
        self._queue: collections.deque[np.ndarray] = collections.deque()

    def reset(self) -> None:
        self._history.clear()
        self._queue.clear()

    def drop_pending(self) -> None:
        """Forget the planned actions, keep the observation history: the next ``step`` plans afresh (a hand-back
        from a human: the queue was planned before the human moved the robot)."""
        self._queue.clear()

    @property
    def will_plan(self) -> bool:
        """True when the next ``step`` calls the planner (the action queue is empty)."""
        return not self._queue

    def pending(self) -> list[np.ndarray]:
        """Planned actions not yet returned (what a trajectory command publishes ahead)."""
        return list(self._queue)

    def step(self, frame: Frame, plan: Callable[[Frame], np.ndarray]) -> np.ndarray:
        """Remember ``frame``; when the queue is empty, ``plan`` maps the (1, T_o, ...) history to (T_a, Da)."""
        if not self._history:
            for _ in range(self.n_obs_steps):
                self._history.append(frame)
        else:
            self._history.append(frame)
        if not self._queue:
            batch = {k: np.stack([h[k] for h in self._history])[None] for k in frame}
            self._queue.extend(plan(batch))
        return np.asarray(self._queue.popleft(), dtype=np.float32)
