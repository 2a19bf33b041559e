"""Training data from a store: the RAM buffer of the keys a policy needs (by episode filter), its normalisation
statistics, the policy spec the store implies, the per-episode validation split, windows and tensors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robostack.data.buffer import EpisodeBuffer, EpisodeFilter, load_buffer
from robostack.data.normalize import KeyStats, compute_stats
from robostack.data.sampler import SequenceSampler
from robostack.data.schema import IMITATE_KEY, FeatureSpec
from robostack.data.store import EpisodeStore
from robostack.errors import StoreError
from robostack.policies.base import PolicySpec


@dataclass
class TrainingData:
    store: EpisodeStore
    obs_keys: list[str]
    buffer: EpisodeBuffer
    stats: dict[str, KeyStats]
    spec: PolicySpec


def load_store_for_policy(
    path: str, obs_keys: list[str] | None, episodes: EpisodeFilter, action_stats: str = "data"
) -> TrainingData:
    """The observations ``obs_keys`` (default: every ``obs/`` key of the store) and ``action`` of the episodes
    ``episodes`` selects, with statistics and the spec a policy trained on them will carry; ``action_stats="bounds"``
    normalises actions by the spec's bounds instead of the data's range."""
    store = EpisodeStore(path)
    keys = list(obs_keys or [k for k in store.keys if k.startswith("obs/")])
    missing = [k for k in [*keys, "action"] if k not in store.keys]
    if missing:
        raise StoreError(f"{store.path}: missing key(s) {', '.join(missing)} that the policy config needs")
    buf, stats = load_training_data(store, [*keys, "action"], episodes)
    spec = make_spec(store, keys, stats)
    if action_stats == "bounds":
        a = stats["action"]
        lo, hi = np.asarray(spec.action_low, np.float64), np.asarray(spec.action_high, np.float64)
        stats["action"] = KeyStats(min=lo, max=hi, mean=a.mean, std=a.std, count=a.count)
    return TrainingData(store, keys, buf, stats, spec)


def load_training_data(
    store: EpisodeStore, keys: list[str], episodes: EpisodeFilter
) -> tuple[EpisodeBuffer, dict[str, KeyStats]]:
    """The buffer of ``keys`` (plus the ``imitate`` flag where the store has one) and the normalisation statistics
    of its non-image keys; the action statistics cover only imitated steps, so a perturbation's commands never
    stretch the action range a policy learns in."""
    masked = IMITATE_KEY in store.keys
    buf = load_buffer(store.path, [*keys, *([IMITATE_KEY] if masked else [])], episodes)
    stats = compute_stats(
        buf,
        [k for k in keys if store.info.features[k].dtype != "uint8"],
        rows={"action": buf.data[IMITATE_KEY]} if masked else None,
    )
    return buf, stats


def make_spec(store: EpisodeStore, obs_keys: list[str], stats: dict) -> PolicySpec:
    feats = store.info.features
    task_spec = store.info.extra.get("task_spec") or {}
    if "action_low" in task_spec:
        low, high = task_spec["action_low"], task_spec["action_high"]
    else:  # recorded data without declared bounds: the range seen in the data
        low, high = stats["action"].min.tolist(), stats["action"].max.tolist()
    return PolicySpec(
        obs={k: feats[k] for k in obs_keys},
        action=FeatureSpec(feats["action"].dtype, feats["action"].shape, names=feats["action"].names),
        action_low=[float(x) for x in low],
        action_high=[float(x) for x in high],
        control_rate_hz=store.info.control_rate_hz,
    )


def data_fingerprint(store: EpisodeStore, episode_indices: list[int]) -> dict[str, Any]:
    """Identifies exactly which data a policy saw: store, committed episodes and the subset used."""
    h = hashlib.sha256()
    h.update(store.episode_ends.tobytes())
    h.update(json.dumps(store.info.provenance, sort_keys=True, default=str).encode())
    h.update(np.asarray(episode_indices, np.int64).tobytes())
    return {
        "store": str(store.path.resolve()),
        "episodes": len(episode_indices),
        "store_episodes": store.n_episodes,
        "sha256": h.hexdigest()[:16],
    }


def validation_mask(n_episodes: int, fraction: float, seed: int) -> np.ndarray:
    """True for the episodes that train, False for the ``fraction`` held out (per episode, seeded)."""
    n_val = int(round(fraction * n_episodes)) if n_episodes > 1 else 0
    val = set(np.random.default_rng(seed).choice(n_episodes, n_val, replace=False).tolist())
    return np.array([i not in val for i in range(n_episodes)])


def policy_windows(
    buf: EpisodeBuffer, policy: Any, obs_keys: list[str], mask: np.ndarray
) -> tuple[SequenceSampler, SequenceSampler | None]:
    """Training and validation windows of the length ``policy`` trains on (validation: None when nothing is held
    out)."""
    horizon = policy.window_horizon()
    kw = {
        "horizon": horizon,
        "n_obs_steps": policy.config.n_obs_steps,
        "n_action_steps": min(policy.config.n_action_steps, horizon - policy.config.n_obs_steps + 1),
        "obs_keys": obs_keys,
    }
    train = SequenceSampler(buf, episode_mask=mask, **kw)
    return train, (SequenceSampler(buf, episode_mask=~mask, **kw) if (~mask).any() else None)


def to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True) for k, v in batch.items()
    }
