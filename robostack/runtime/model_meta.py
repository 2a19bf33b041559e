"""What an exported model says about itself, stored as ONNX ``metadata_props``.

One JSON blob (``robostack.meta``) holds everything the runtime needs: the observation spec (keys, shapes, dtypes,
names, units), the action spec and bounds, the chunking (``n_obs_steps``/``horizon``/``n_action_steps``), the control
rate, the sampler steps baked into the graph, how the initial noise is drawn, and hashes of the normalisation
statistics and of the training config. The most useful fields are repeated as flat keys so that a model viewer
(Netron, ``onnx.load``) shows them without parsing JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robostack.errors import RobostackError
from robostack.policies.base import PolicySpec

FORMAT = "robostack-onnx/1"
META_KEY = "robostack.meta"
NOISE_INPUT = "noise"
ACTION_OUTPUT = "action"


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of a (training or policy) config: canonical JSON, sha256, first 16 hex digits."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class ModelMeta:
    family: str
    """Policy family the graph was exported from: diffusion | flow | gaussian."""
    spec: PolicySpec
    n_obs_steps: int
    horizon: int
    n_action_steps: int
    steps: int
    """Sampler steps unrolled in the graph (DDIM or integration steps); 0 for one-shot policies."""
    noise: str
    """How the runtime fills the ``noise`` input by default: 'gaussian' (seeded normal) or 'none' (no noise input:
    the graph is a one-shot policy's mean)."""
    noise_shape: list[int]
    """Per-sample noise shape (T_p, Da); empty when the graph takes no noise."""
    noise_seed: int
    stats_hash: str
    config_hash: str
    precision: str = "fp32"
    robostack_version: str = ""
    inputs: list[str] = field(default_factory=list)
    """Graph input names, in order (observation keys, then ``noise`` where the graph takes it)."""
    policy_config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """Fingerprint of the training data, copied from the checkpoint."""

    @property
    def control_rate_hz(self) -> float:
        return self.spec.control_rate_hz

    def to_props(self) -> dict[str, str]:
        d = asdict(self)
        d["spec"] = self.spec.to_json()
        return {
            "robostack.format": FORMAT,
            META_KEY: json.dumps(d),
            "robostack.family": self.family,
            "robostack.n_obs_steps": str(self.n_obs_steps),
            "robostack.horizon": str(self.horizon),
            "robostack.n_action_steps": str(self.n_action_steps),
            "robostack.control_rate_hz": str(self.control_rate_hz),
            "robostack.stats_hash": self.stats_hash,
            "robostack.config_hash": self.config_hash,
            "robostack.version": self.robostack_version,
        }

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "model") -> ModelMeta:
        if props.get("robostack.format") != FORMAT or META_KEY not in props:
            raise RobostackError(
                f"{where}: no robostack metadata (export it with `robostack export`; found keys "
                f"{sorted(props)[:4] or 'none'})"
            )
        try:
            d = json.loads(props[META_KEY])
            d["spec"] = PolicySpec.from_json(d["spec"])
            return cls(**d)
        except (KeyError, TypeError, ValueError) as exc:
            raise RobostackError(f"{where}: unreadable robostack metadata ({exc})") from None


def read_model_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """Metadata of an exported model, without building an inference session."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise RobostackError(f"{p}: no such model file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise RobostackError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    return ModelMeta.from_props({m.key: m.value for m in model.metadata_props}, str(p))
