"""Transitions for off-policy learning: (s, a, r, s', terminated, truncated, is_intervention, source).

Loaded from stores, where row t holds the observation *before* step t: s' of row t is row t + 1 of the same
episode. An episode's last row is the one place the store has no next observation: if it ``terminated`` there is
nothing to bootstrap (s' is kept as s, and the target ignores it); if it did not (a time limit, or a recording that
stopped), the transition cannot be bootstrapped and is left out -- never paired with the next episode's first
observation. Online transitions arrive with their real s' (the vector environment's ``final_obs``) and are appended
into a ring of fixed capacity, evicting the oldest online ones; loaded (offline) transitions stay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robostack.data.buffer import EpisodeBuffer, EpisodeFilter, load_buffer
from robostack.data.schema import SOURCES
from robostack.errors import RobostackError, StoreError


@dataclass
class StoreTransitions:
    """What ``transitions_from_buffer`` found: the arrays, and how many last rows it left out."""

    arrays: dict[str, np.ndarray]
    dropped: int


def transitions_from_buffer(
    buf: EpisodeBuffer, obs_keys: Sequence[str], reward: np.ndarray | None = None
) -> StoreTransitions:
    """Every bootstrappable transition of ``buf``; ``reward`` (one per row) replaces the store's own."""
    ends = buf.episode_ends.astype(np.int64)
    starts = buf.episode_starts
    n = buf.n_steps
    rows = np.arange(n)
    last = np.zeros(n, bool)
    last[ends - 1] = True
    terminated = buf.data["terminated"].astype(bool) if "terminated" in buf.data else np.zeros(n, bool)
    keep = ~last | terminated
    nxt = np.where(last, rows, rows + 1)  # a terminated last row points at itself; never bootstrapped
    r = buf.data.get("reward") if reward is None else reward
    if r is None:
        raise RobostackError(
            "the store has no reward: give the transitions a reward (e.g. RLIF's from interventions)"
        )
    if r.shape[0] != n:
        raise RobostackError(f"{r.shape[0]} rewards for {n} rows")
    idx, nidx = rows[keep], nxt[keep]
    source = _sources(buf, starts, ends)
    arrays = {
        "action": buf.data["action"][idx].astype(np.float32),
        "reward": np.asarray(r, np.float32)[idx],
        "terminated": terminated[idx],
        "truncated": (last & ~terminated)[idx],
        "is_intervention": _flag(buf, "is_intervention")[idx],
        "source": source[idx],
    }
    for k in obs_keys:
        arrays[k] = buf.data[k][idx]
        arrays["next/" + k] = buf.data[k][nidx]
    return StoreTransitions(arrays, int((~keep).sum()))


def _flag(buf: EpisodeBuffer, key: str) -> np.ndarray:
    return buf.data[key].astype(bool) if key in buf.data else np.zeros(buf.n_steps, bool)


def _sources(buf: EpisodeBuffer, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    codes = np.zeros(buf.n_steps, np.uint8)
    for meta, s, e in zip(buf.episodes, starts, ends, strict=True):
        codes[s:e] = SOURCES.index(meta.source)
    return codes


class ReplayBuffer:
    """Offline transitions (fixed) followed by a ring of ``capacity`` online ones; uniform or symmetric sampling."""

    def __init__(self, example: dict[str, np.ndarray], capacity: int) -> None:
        """``example``: one batch of transitions (any length) naming every key with its per-row shape and dtype."""
        if capacity < 1:
            raise RobostackError(f"replay capacity must be at least 1, got {capacity}")
        self.keys = list(example)
        self.capacity = capacity
        # offline: the loaded transitions, never evicted; online: the ring (rows beyond n_online are unused)
        self.offline = {k: v[:0].copy() for k, v in example.items()}
        self.online = {k: np.zeros((capacity, *v.shape[1:]), v.dtype) for k, v in example.items()}
        self._n_online, self._next = 0, 0

    @classmethod
    def from_stores(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        obs_keys: Sequence[str],
        capacity: int,
        episodes: EpisodeFilter | None = None,
        reward_fn=None,
    ) -> tuple[ReplayBuffer, int]:
        """Offline transitions of every store (same keys in each), plus room for ``capacity`` online ones; returns
        the buffer and how many unbootstrappable last rows were left out."""
        parts, dropped = [], 0
        for path in paths:
            buf = load_buffer(path, _store_keys(path, obs_keys), episodes)
            found = transitions_from_buffer(buf, obs_keys, reward_fn(buf) if reward_fn else None)
            parts.append(found.arrays)
            dropped += found.dropped
        if not parts:
            raise RobostackError("no store given")
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        replay = cls(arrays, capacity)
        replay.offline = arrays
        return replay, dropped

    @property
    def n_offline(self) -> int:
        return int(self.offline["action"].shape[0])

    @property
    def n_online(self) -> int:
        return self._n_online

    def __len__(self) -> int:
        return self.n_offline + self.n_online

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Append online transitions (one row per key and transition), evicting the oldest online ones when full."""
        missing = [k for k in self.keys if k not in batch]
        if missing:
            raise RobostackError(f"transitions lack key(s) {', '.join(missing)}")
        n = int(batch["action"].shape[0])
        pos = (self._next + np.arange(n)) % self.capacity
        for k in self.keys:
            self.online[k][pos] = batch[k]
        self._next = int((self._next + n) % self.capacity)
        self._n_online = min(self.capacity, self._n_online + n)

    def online_state(self) -> dict[str, Any]:
        """The online ring as it stands (rows in use, write position): what an exact resume puts back."""
        n = self._n_online
        return {"rows": {k: v[:n].copy() for k, v in self.online.items()}, "next": self._next, "n": n}

    def load_online_state(self, state: dict[str, Any]) -> None:
        n = int(state["n"])
        if n > self.capacity or set(state["rows"]) != set(self.keys):
            raise RobostackError("the saved replay does not fit this buffer (another capacity or keys)")
        for k in self.keys:
            self.online[k][:n] = state["rows"][k]
        self._n_online, self._next = n, int(state["next"])

    def _gather(self, offline_idx: np.ndarray, online_idx: np.ndarray) -> dict[str, np.ndarray]:
        return {
            k: np.concatenate([self.offline[k][offline_idx], self.online[k][online_idx]]) for k in self.keys
        }

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform over every transition held."""
        if len(self) == 0:
            raise RobostackError("the replay buffer is empty")
        i = rng.integers(0, len(self), batch_size)
        off = i[i < self.n_offline]
        on = i[i >= self.n_offline] - self.n_offline
        return self._gather(off, on)

    def sample_symmetric(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Half offline, half online (RLPD's symmetric sampling); all from whichever side exists alone."""
        if self.n_offline == 0 or self.n_online == 0:
            return self.sample(batch_size, rng)
        half = batch_size // 2
        off = rng.integers(0, self.n_offline, half)
        on = rng.integers(0, self.n_online, batch_size - half)
        return self._gather(off, on)


def _store_keys(path: str | os.PathLike[str], obs_keys: Sequence[str]) -> list[str]:
    from robostack.data.store import EpisodeStore

    have = set(EpisodeStore(path).keys)
    needed = [*obs_keys, "action"]
    missing = [k for k in needed if k not in have]
    if missing:
        raise StoreError(f"{path}: missing key(s) {', '.join(missing)} for the replay buffer")
    optional = [k for k in ("reward", "terminated", "truncated", "is_intervention") if k in have]
    return [*needed, *optional]
