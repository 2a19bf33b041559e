"""Success of the degraded experts that act for simulated interveners (``robostack/sim/quality.py:EXPERT_LEVELS``),
each on its own, every episode counted, on the selection seed range (a calibration, not a reported policy result).

    .venv/bin/python benchmarks/expert_levels.py [--task push] [--episodes 200] [--out benchmarks/results/expert_levels.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from robostack.eval.metrics import wilson_interval
from robostack.eval.seeds import RANGES
from robostack.sim.expert_alone import expert_success
from robostack.sim.quality import EXPERT_LEVELS
from robostack.utils.table import format_markdown


def measure(task: str, level: float, episodes: int, envs: int = 8) -> tuple[int, int, float]:
    """(successes, episodes, seconds) on the selection range's episodes (``sim.expert_alone.expert_success``)."""
    t0 = time.perf_counter()
    succ, done = expert_success(task, level, RANGES["selection"].start + 500_000, episodes, envs)
    return succ, done, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="push")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", default="benchmarks/results/expert_levels.md")
    args = p.parse_args()
    rows = []
    for level in [1.0, *sorted(EXPERT_LEVELS[args.task], reverse=True)]:
        s, n, sec = measure(args.task, level, args.episodes)
        lo, hi = wilson_interval(s, n)
        rows.append(
            (
                args.task,
                f"{level:.1f}",
                f"{100 * s / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})",
                n,
                f"{sec:.0f}",
            )
        )
        print(rows[-1], flush=True)
    table = format_markdown(["task", "level", "success (95% CI)", "episodes", "seconds"], rows)
    Path(args.out).write_text(
        f"# Degraded expert levels ({time.strftime('%Y-%m-%d')})\n\n`.venv/bin/python benchmarks/expert_levels.py "
        f"--task {args.task} --episodes {args.episodes}`; the episodes of seeds 700,000-{700_000 + args.episodes - 1} "
        f"(selection range) on 8 vector-env copies.\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
