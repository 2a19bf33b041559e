"""Learning algorithms, registered by decorator: ``robostack train --algo`` lists those that learn from stores,
``robostack finetune --algo`` those that improve a trained policy in simulation.

An algorithm is a module in ``robostack/algos/`` (each is imported on first use) or, from another package, a module
named by its ``robostack.algos`` entry point. Whatever it trains ships as a registered policy folder, so evaluation,
export, the runtimes and the ROS nodes take its output unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robostack.errors import RobostackError
from robostack.utils.plugins import import_plugins

ENTRY_POINT_GROUP = "robostack.algos"
STAGES = ("train", "finetune")


@dataclass(frozen=True)
class Algorithm:
    name: str
    stage: str
    """'train' (from stores) or 'finetune' (from a trained policy, in simulation)."""
    config_cls: type
    """Typed config; the resolved one is saved as ``<out>/config.yaml``."""
    run: Callable[..., Path]
    """``run(config, out, resume=False, progress=True) -> out``."""
    summary: str


_ALGORITHMS: dict[tuple[str, str], Algorithm] = {}
_discovered = False


def register_algorithm(
    name: str, stage: str, config_cls: type, summary: str
) -> Callable[[Callable], Callable]:
    """Register ``run(config, out, resume, progress)`` as algorithm ``name`` of ``stage``."""
    if stage not in STAGES:
        raise RobostackError(f"unknown algorithm stage '{stage}' (choose from {', '.join(STAGES)})")

    def deco(fn: Callable[..., Path]) -> Callable[..., Path]:
        _ALGORITHMS[(stage, name)] = Algorithm(name, stage, config_cls, fn, summary)
        return fn

    return deco


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        import_plugins("robostack.algos", ENTRY_POINT_GROUP, skip=("registry",))


def algorithm_names(stage: str) -> list[str]:
    _discover()
    return sorted(name for (s, name) in _ALGORITHMS if s == stage)


def get_algorithm(name: str, stage: str) -> Algorithm:
    _discover()
    if (stage, name) not in _ALGORITHMS:
        names = algorithm_names(stage)
        raise RobostackError(f"unknown {stage} algorithm '{name}' (choose from {', '.join(names) or 'none'})")
    return _ALGORITHMS[(stage, name)]


def run_algorithm(
    name: str,
    stage: str,
    config: Any,
    out: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
) -> Path:
    return get_algorithm(name, stage).run(config, out, resume=resume, progress=progress)
