"""Training windows with Diffusion Policy's conventions, gathered in one vectorised index per key.

Timing (T_o = n_obs_steps, T_a = n_action_steps, T_p = horizon), for T_o=2, T_a=8, T_p=16::

    obs      |o o|                               first T_o frames of the window condition the policy
    actions  |a a a a a a a a a a a a a a a a|   T_p predicted actions
    executed   |x x x x x x x x|                 pred[T_o-1 : T_o-1+T_a]

Windows start from ``-(T_o-1)`` to ``L - T_p + (T_a-1)`` within each episode (L - T_p + T_o + T_a - 1 windows),
never cross episodes, and out-of-episode slots repeat the first or last frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robostack.data.buffer import EpisodeBuffer
from robostack.errors import RobostackError


class SequenceSampler:
    """Index of every valid window, and a gather that returns a batch of them as arrays."""

    def __init__(
        self,
        buffer: EpisodeBuffer,
        horizon: int = 16,
        n_obs_steps: int = 2,
        n_action_steps: int = 8,
        obs_keys: Sequence[str] | None = None,
        episode_mask: np.ndarray | None = None,
    ) -> None:
        if not 1 <= n_obs_steps <= horizon or not 1 <= n_action_steps <= horizon - n_obs_steps + 1:
            raise RobostackError(
                f"need 1 <= n_obs_steps <= horizon and n_action_steps <= horizon - n_obs_steps + 1 "
                f"(got horizon={horizon}, n_obs_steps={n_obs_steps}, n_action_steps={n_action_steps})"
            )
        self.buffer = buffer
        self.horizon = horizon
        self.n_obs_steps = n_obs_steps
        self.n_action_steps = n_action_steps
        self.obs_keys = set(
            obs_keys if obs_keys is not None else [k for k in buffer.data if k.startswith("obs/")]
        )
        pad_before, pad_after = n_obs_steps - 1, n_action_steps - 1
        starts, ends = buffer.episode_starts, buffer.episode_ends
        keep = np.ones(buffer.n_episodes, bool) if episode_mask is None else np.asarray(episode_mask, bool)
        win_start, ep_start, ep_last = [], [], []
        for s, e, k in zip(starts, ends, keep, strict=True):
            if not k:
                continue
            first, last = -pad_before, (e - s) - horizon + pad_after
            if last < first:
                last = first  # an episode shorter than a window still yields one (padded) window
            n = last - first + 1
            win_start.append(s + np.arange(first, last + 1))
            ep_start.append(np.full(n, s))
            ep_last.append(np.full(n, e - 1))
        if not win_start:
            raise RobostackError("no training windows: every episode was filtered out")
        self.window_start = np.concatenate(win_start).astype(np.int64)
        self.episode_start = np.concatenate(ep_start).astype(np.int64)
        self.episode_last = np.concatenate(ep_last).astype(np.int64)
        self._offsets = np.arange(horizon, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.window_start.shape[0])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """(B, horizon) buffer rows of windows ``idx``, clamped inside their episode (edge padding)."""
        r = self.window_start[idx, None] + self._offsets[None, :]
        return np.clip(r, self.episode_start[idx, None], self.episode_last[idx, None])

    def sample(self, idx: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """Windows ``idx``: observation keys give (B, n_obs_steps, ...), the others (B, horizon, ...)."""
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.rows(idx)
        obs_rows = rows[:, : self.n_obs_steps]
        return {k: v[obs_rows if k in self.obs_keys else rows] for k, v in self.buffer.data.items()}

    def random_batch(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.sample(rng.integers(0, len(self), size=batch_size))
