"""Checkpoints of any set of modules, optimisers, schedulers and scalers, with the random streams, for an exact
``--resume``: the continued run draws the same numbers the uninterrupted one would have.

A run's checkpoints live in ``<run>/checkpoints/step_NNNNNNNN/``; ``checkpoints/last`` names the newest complete one
(written last, atomically, so a kill mid-save leaves the previous one in place).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.errors import RobostackError
from robostack.policies.loading import LAST

TRAIN_STATE = "train_state.pt"


def checkpoint_folder(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:08d}"


def save_train_state(folder: Path, step: int, objects: dict[str, Any], rng: np.random.Generator) -> None:
    """``folder/train_state.pt``: the step, each object's ``state_dict()`` under its name (None stays None), the numpy
    generator and torch's CPU generator."""
    state: dict[str, Any] = {"step": step}
    state.update({name: obj.state_dict() if obj is not None else None for name, obj in objects.items()})
    state["numpy_rng"] = rng.bit_generator.state
    state["torch_rng"] = torch.get_rng_state()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / TRAIN_STATE)


def mark_last(run: Path, folder: Path) -> None:
    """Point ``checkpoints/last`` at ``folder`` (atomically)."""
    tmp = run / "checkpoints" / (LAST + ".partial")
    tmp.write_text(folder.name)
    os.replace(tmp, run / "checkpoints" / LAST)


def load_train_state(run: Path, objects: dict[str, Any], rng: np.random.Generator) -> int:
    """Load the last checkpoint's state into ``objects`` (a None object, or a None state, is skipped) and the random
    streams; returns its step."""
    last = run / "checkpoints" / LAST
    if not last.is_file():
        raise RobostackError(f"{run}: nothing to resume (no checkpoint)")
    path = run / "checkpoints" / last.read_text().strip() / TRAIN_STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        for name, obj in objects.items():
            if obj is not None and state[name] is not None:
                obj.load_state_dict(state[name])
    except (RuntimeError, KeyError, FileNotFoundError) as exc:
        raise RobostackError(
            f"{path}: cannot resume from this checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
