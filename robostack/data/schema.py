"""Names and specs shared by every reader and writer of an episode store.

Layout (Diffusion Policy compatible, zarr v3)::

    store.zarr/
      zarr.json                  root attributes: format version, control rate, feature specs, provenance
      data/<key>                 (N, ...) every step of every episode, concatenated, chunked along time only
      meta/episode_ends          (E,) int64 cumulative exclusive ends -- the commit record
      meta/episodes              (E, 5) int64 per-episode metadata; columns in EPISODE_COLUMNS
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from robostack.errors import SpecError

FORMAT_NAME = "robostack-episodes"
FORMAT_VERSION = 1

#: Every episode has one of these origins; stored as uint8 codes in ``meta/episode_source``.
SOURCES: tuple[str, ...] = ("sim", "real", "generated", "intervention", "imported", "teleop")

#: How an episode's actions were produced; stored as codes in the ``quality`` column.
QUALITIES: tuple[str, ...] = (
    "unknown", "expert", "noisy", "random", "human", "policy", "dart", "recovery", "medium",
)  # fmt: skip

#: Per-step bool key of stores with injected perturbations: False where the recorded action is not to be imitated.
IMITATE_KEY = "imitate"

#: Columns of ``meta/episodes`` (int64): one array, so a commit writes two small files, not seven.
EPISODE_COLUMNS: tuple[str, ...] = ("success", "source", "task", "seed", "length", "quality")

#: Keys every robostack recorder writes; ``obs/<name>`` keys come in addition.
STANDARD_KEYS: tuple[str, ...] = (
    "action",
    "reward",
    "terminated",
    "truncated",
    "timestamp",
    "is_intervention",
    "policy_action",
    "sim_state",
)


@dataclass(frozen=True)
class FeatureSpec:
    """What one ``data/<key>`` array holds per step."""

    dtype: str
    shape: tuple[int, ...]
    names: list[str] | None = None
    """Per-dimension names for vectors (e.g. joint names), so consumers map by name, never by index."""
    units: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        np.dtype(self.dtype)  # raises on an unknown dtype
        if self.names is not None and len(self.shape) == 1 and len(self.names) != self.shape[0]:
            raise SpecError(f"feature spec names has {len(self.names)} entries for shape {self.shape}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            dtype=str(d["dtype"]),
            shape=tuple(d["shape"]),
            names=d.get("names"),
            units=d.get("units"),
            description=d.get("description", ""),
        )

    @classmethod
    def of(cls, array: np.ndarray, **kw: Any) -> FeatureSpec:
        """Spec of a per-step array stacked along axis 0."""
        return cls(dtype=str(array.dtype), shape=tuple(array.shape[1:]), **kw)


@dataclass
class StoreInfo:
    """Store-level attributes, saved in the root group's attributes."""

    control_rate_hz: float
    features: dict[str, FeatureSpec]
    robot: str = ""
    task_description: str = ""
    tasks: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "control_rate_hz": float(self.control_rate_hz),
            "features": {k: v.to_json() for k, v in self.features.items()},
            "robot": self.robot,
            "task_description": self.task_description,
            "tasks": list(self.tasks),
            "sources": list(SOURCES),
            "provenance": self.provenance,
            "extra": self.extra,
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StoreInfo:
        return cls(
            control_rate_hz=float(attrs.get("control_rate_hz", 0.0)),
            features={k: FeatureSpec.from_json(v) for k, v in attrs.get("features", {}).items()},
            robot=attrs.get("robot", ""),
            task_description=attrs.get("task_description", ""),
            tasks=list(attrs.get("tasks", [])),
            provenance=dict(attrs.get("provenance", {})),
            extra=dict(attrs.get("extra", {})),
        )


def check_episode_arrays(data: dict[str, np.ndarray], features: dict[str, FeatureSpec]) -> int:
    """Check one episode's arrays against the specs; return its length. Raises SpecError naming the key."""
    missing = sorted(set(features) - set(data))
    if missing:
        raise SpecError(f"episode is missing key(s) {', '.join(missing)}")
    extra = sorted(set(data) - set(features))
    if extra:
        raise SpecError(f"episode has key(s) not declared in the store: {', '.join(extra)}")
    length = None
    for key, spec in features.items():
        arr = np.asarray(data[key])
        if arr.ndim == 0:
            raise SpecError(f"key '{key}': expected per-step array, got a scalar")
        if tuple(arr.shape[1:]) != spec.shape:
            raise SpecError(f"key '{key}': per-step shape {tuple(arr.shape[1:])} != declared {spec.shape}")
        if not np.can_cast(arr.dtype, np.dtype(spec.dtype), casting="same_kind"):
            raise SpecError(f"key '{key}': dtype {arr.dtype} cannot be stored as {spec.dtype}")
        if length is None:
            length = arr.shape[0]
        elif arr.shape[0] != length:
            raise SpecError(f"key '{key}': {arr.shape[0]} steps, other keys have {length}")
    if not length:
        raise SpecError("episode has no steps")
    return int(length)


def chunk_rows(spec: FeatureSpec, target_bytes: int = 256 << 10, max_rows: int = 4096) -> int:
    """Rows per time chunk. Smaller than Diffusion Policy's ~2 MB: appending rewrites the partial chunk per episode."""
    row_bytes = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
    return int(max(1, min(max_rows, target_bytes // max(row_bytes, 1))))
