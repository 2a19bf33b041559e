"""Resolve what users pass as ``--policy``: a training run folder, a checkpoint folder or an exported .onnx model."""

from __future__ import annotations

import os
from pathlib import Path

from robostack.errors import RobostackError
from robostack.policies.base import Policy, PolicySpec
from robostack.policies.checkpoint import POLICY_JSON, load_policy, read_policy_meta

LAST = "last"


def resolve_policy_folder(path: str | os.PathLike[str]) -> Path:
    """A folder with policy.json: the path itself, or a run's latest checkpoint."""
    p = Path(path)
    if not p.exists():
        raise RobostackError(f"{p}: no such policy or run folder")
    if (p / POLICY_JSON).is_file():
        return p
    last = p / "checkpoints" / LAST
    if last.is_file():
        ckpt = p / "checkpoints" / last.read_text().strip()
        if (ckpt / POLICY_JSON).is_file():
            return ckpt
    raise RobostackError(f"{p}: neither a policy folder nor a training run with a checkpoint")


def is_exported_model(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix == ".onnx"


def load_any_policy(path: str | os.PathLike[str], device: str = "cpu", threads: int = 0) -> Policy:
    """A PyTorch policy, or for a .onnx path the onnxruntime policy (same inference contract)."""
    if is_exported_model(path):
        from robostack.runtime import load

        return load(path, device=device, backend="onnxruntime", threads=threads)
    return load_policy(resolve_policy_folder(path), device=device)


def read_any_spec(path: str | os.PathLike[str]) -> PolicySpec:
    if is_exported_model(path):
        from robostack.export.metadata import read_model_meta

        return read_model_meta(path).spec
    return PolicySpec.from_json(read_policy_meta(resolve_policy_folder(path))["spec"])
