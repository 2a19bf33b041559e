"""One row of a benchmark report, and the report file (``results.json``) that ``--only`` runs add rows to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from robostack.errors import RobostackError


def recipe_of(run: dict[str, Any]) -> str:
    """The policy config a suite entry trains (a LeRobot entry: the config it mirrors, ``like``)."""
    return run.get("like") or run["policy"]


@dataclass
class RunResult:
    name: str
    task: str
    policy: str
    """Policy family, or ``lerobot_diffusion`` for LeRobot's DiffusionPolicy."""
    dataset: str
    episodes: int
    steps: int
    train_seconds: float
    samples_per_s: float
    success_rate: float
    ci_low: float
    ci_high: float
    latency_p50_ms: float
    latency_p99_ms: float
    rms_jerk: float
    recipe: str
    """Policy config the run trained (LeRobot runs: the config they mirror)."""
    seed_range: str
    """Evaluation seed range (``robostack.eval.seeds``)."""
    side_by_side: str = ""
    """The run it trained alternating with in one process; empty when it trained alone."""

    @classmethod
    def from_eval(
        cls,
        run: dict[str, Any],
        policy: str,
        steps: int,
        train_seconds: float,
        samples_per_s: float,
        result: Any,
    ) -> RunResult:
        """One row of the report from a suite entry, its training figures and its EvalResult."""
        return cls(
            name=run["name"],
            task=result.task,
            policy=policy,
            dataset=run["dataset"],
            episodes=result.episodes,
            steps=steps,
            train_seconds=train_seconds,
            samples_per_s=samples_per_s,
            success_rate=result.success_rate,
            ci_low=result.ci95[0],
            ci_high=result.ci95[1],
            latency_p50_ms=result.latency_p50_ms,
            latency_p99_ms=result.latency_p99_ms,
            rms_jerk=result.rms_jerk,
            recipe=recipe_of(run),
            seed_range=result.seed_range,
        )


def read_results(path: Path) -> list[RunResult]:
    """The rows of a ``results.json``; one this version cannot read is refused, never silently overwritten."""
    names = {f.name for f in fields(RunResult)}
    try:
        rows = json.loads(path.read_text())
        if not all(isinstance(r, dict) and set(r) <= names for r in rows):
            raise ValueError("unknown fields")
        return [RunResult(**row) for row in rows]
    except (ValueError, TypeError, AttributeError) as exc:
        raise RobostackError(
            f"{path}: cannot read the earlier results ({exc}); move it aside to start a new report"
        ) from None


def merge_previous(results: list[RunResult], out_dir: Path) -> list[RunResult]:
    """The rows of earlier invocations (``--only`` runs one entry at a time) not rerun now, then ``results``."""
    path = out_dir / "results.json"
    if not path.exists():
        return results
    fresh = {r.name for r in results}
    return [r for r in read_results(path) if r.name not in fresh] + results


def write_results(results: list[RunResult], out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
