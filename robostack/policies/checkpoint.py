"""Save and load policies: safetensors weights + the resolved policy config + spec + normalisation statistics.

A policy folder holds ``policy.json`` (type, config, spec, statistics hash, data fingerprint) and
``model.safetensors``. Loading rebuilds the family from the registry and loads the weights strictly, so a
checkpoint that does not match its config is refused with a clear message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from robostack.config import from_dict, to_dict
from robostack.data.normalize import KeyStats, load_stats, save_stats, stats_hash
from robostack.errors import RobostackError
from robostack.policies.base import Policy, PolicySpec
from robostack.policies.registry import policy_classes

POLICY_JSON = "policy.json"
WEIGHTS = "model.safetensors"


def build_policy(
    type_name: str, config: dict[str, Any], spec: PolicySpec, stats: dict[str, KeyStats]
) -> Policy:
    cls, config_cls = policy_classes(type_name)
    cfg = from_dict(config_cls, {**config, "type": type_name}, "policy.")
    return cls(cfg, spec, stats)


def save_policy(
    policy: Policy,
    folder: str | os.PathLike[str],
    stats: dict[str, KeyStats],
    extra: dict[str, Any] | None = None,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    tmp = folder / (WEIGHTS + ".partial")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    save_stats(stats, folder)
    meta = {
        "format": "robostack-policy",
        "type": policy.config.type,
        "config": to_dict(policy.config),
        "spec": policy.spec.to_json(),
        "stats_hash": stats_hash(stats),
        **(extra or {}),
    }
    (folder / POLICY_JSON).write_text(json.dumps(meta, indent=1))
    return folder


def read_policy_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(folder) / POLICY_JSON
    if not p.is_file():
        raise RobostackError(f"{folder}: not a policy folder (no {POLICY_JSON})")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise RobostackError(f"{p}: unreadable ({exc})") from None
    if meta.get("format") != "robostack-policy":
        raise RobostackError(f"{p}: not a robostack policy")
    return meta


def load_policy(folder: str | os.PathLike[str], device: str = "cpu") -> Policy:
    folder = Path(folder)
    meta = read_policy_meta(folder)
    stats = load_stats(folder)
    if stats_hash(stats) != meta.get("stats_hash"):
        raise RobostackError(
            f"{folder}: normalization.json does not match the statistics the policy was saved with"
        )
    policy = build_policy(meta["type"], meta["config"], PolicySpec.from_json(meta["spec"]), stats)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise RobostackError(f"{folder}: no {WEIGHTS}")
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise RobostackError(f"{weights}: unreadable weights ({type(exc).__name__}: {exc})") from None
    missing, unexpected = [], []
    own = policy.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape_bad = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shape_bad:
        detail = (
            (missing and f"missing {missing[:3]}")
            or (unexpected and f"unexpected {unexpected[:3]}")
            or (f"shape mismatch in {shape_bad[:3]}")
        )
        raise RobostackError(f"{weights}: incompatible with its policy config ({detail})")
    policy.load_state_dict(state)
    return policy.to(torch.device(device)).eval()
