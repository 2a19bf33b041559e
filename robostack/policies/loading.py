"""Resolve a training run folder or a checkpoint folder to the policy folder to load (exported models: runtime)."""

from __future__ import annotations

import os
from pathlib import Path

from robostack.errors import RobostackError
from robostack.policies.checkpoint import POLICY_JSON

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
