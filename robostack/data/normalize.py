"""Per-key normalisation statistics, computed from a store and saved with anything trained on it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robostack.errors import RobostackError

if TYPE_CHECKING:
    from robostack.data.buffer import EpisodeBuffer

STATS_FILE = "normalization.json"


@dataclass
class KeyStats:
    """Per-dimension statistics of one key (arrays have the key's per-step shape)."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: int

    def to_json(self) -> dict[str, object]:
        return {k: np.asarray(getattr(self, k)).tolist() for k in ("min", "max", "mean", "std")} | {
            "count": self.count
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> KeyStats:
        arr = {k: np.asarray(d[k], dtype=np.float64) for k in ("min", "max", "mean", "std")}
        return cls(count=int(d["count"]), **arr)  # type: ignore[arg-type]


def compute_stats(
    buffer: EpisodeBuffer, keys: list[str] | None = None, rows: dict[str, np.ndarray] | None = None
) -> dict[str, KeyStats]:
    """Statistics over every committed step of the buffer, in float64 (image keys are skipped by default);
    ``rows`` restricts a key to the steps its boolean mask selects."""
    keys = keys if keys is not None else [k for k, v in buffer.data.items() if v.dtype != np.uint8]
    out: dict[str, KeyStats] = {}
    for k in keys:
        x = np.asarray(buffer.data[k], dtype=np.float64)
        if rows is not None and k in rows:
            x = x[np.asarray(rows[k], bool)]
        if not np.isfinite(x).all():
            raise RobostackError(
                f"key '{k}' holds NaN or Inf values; cannot compute normalisation statistics"
            )
        out[k] = KeyStats(min=x.min(0), max=x.max(0), mean=x.mean(0), std=x.std(0), count=int(x.shape[0]))
    return out


def save_stats(stats: dict[str, KeyStats], folder: str | os.PathLike[str]) -> Path:
    path = Path(folder) / STATS_FILE
    path.write_text(json.dumps({k: v.to_json() for k, v in stats.items()}, indent=1))
    return path


def load_stats(folder_or_file: str | os.PathLike[str]) -> dict[str, KeyStats]:
    p = Path(folder_or_file)
    p = p / STATS_FILE if p.is_dir() else p
    if not p.is_file():
        raise RobostackError(f"{p}: normalisation statistics not found")
    return {k: KeyStats.from_json(v) for k, v in json.loads(p.read_text()).items()}


def stats_hash(stats: dict[str, KeyStats]) -> str:
    blob = json.dumps({k: v.to_json() for k, v in sorted(stats.items())}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class MinMaxNormalizer:
    """Maps each key to [-1, 1] per dimension; constant dimensions map to 0 instead of dividing by zero."""

    def __init__(self, stats: dict[str, KeyStats], eps: float = 1e-8) -> None:
        self.stats = stats
        self.eps = eps

    def _get(self, key: str) -> KeyStats:
        if key not in self.stats:
            raise RobostackError(
                f"no normalisation statistics for key '{key}'"
            )  # never pass through silently
        return self.stats[key]

    def normalize(self, key: str, x: np.ndarray) -> np.ndarray:
        s = self._get(key)
        scale = np.maximum(s.max - s.min, self.eps)
        return ((x - s.min) / scale * 2.0 - 1.0).astype(np.float32)

    def unnormalize(self, key: str, y: np.ndarray) -> np.ndarray:
        s = self._get(key)
        scale = np.maximum(s.max - s.min, self.eps)
        return ((y + 1.0) / 2.0 * scale + s.min).astype(np.float32)
