"""The benchmark report: the table, robostack against LeRobot (per pair and pooled over training seeds), the chart."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from robostack.bench.results import RunResult, merge_previous, write_results
from robostack.compare.lerobot_diffusion import LEROBOT
from robostack.utils.table import format_markdown, format_table


def lerobot_ratios(results: list[RunResult]) -> list[str]:
    """robostack's diffusion run against LeRobot's on the same dataset: training time and success, side by side."""
    lines = []
    for lr in (r for r in results if r.policy == LEROBOT):
        ours = [
            r
            for r in results
            if r.policy == "diffusion"
            and r.dataset == lr.dataset
            and r.task == lr.task
            and r.recipe
            == lr.recipe  # the same U-Net: a wider one is not the comparison LeRobot was trained for
            and r.steps == lr.steps  # a pair half-rerun with another step count compares nothing
        ]
        if lr.side_by_side:  # several training seeds: each LeRobot run against the one it trained beside
            ours = [r for r in ours if r.name == lr.side_by_side]
        for r in ours:
            if r.train_seconds > 0 and lr.train_seconds > 0:
                together = r.side_by_side == lr.name and lr.side_by_side == r.name
                lines.append(
                    f"{r.name} vs {lr.name}: trains {lr.train_seconds / r.train_seconds:.2f}x faster "
                    f"({r.train_seconds:.1f} s vs {lr.train_seconds:.1f} s for {r.steps} steps, compile included"
                    + ("; trained side by side in one process" if together else "")
                    + f"), success {100 * r.success_rate:.0f}% vs {100 * lr.success_rate:.0f}%"
                )
    return lines


def seed_pooled_comparison(results: list[RunResult]) -> list[str]:
    """robostack against LeRobot over several training seeds of the same recipe: pooled success with its interval,
    and "beats" only where the two intervals do not overlap."""
    from robostack.eval.metrics import wilson_interval

    def key(r: RunResult) -> tuple[str, str, str, int]:
        return (r.dataset, r.task, r.recipe, r.steps)

    lines = []
    lerobot: dict[tuple[str, str, str, int], list[RunResult]] = {}
    ours: dict[tuple[str, str, str, int], list[RunResult]] = {}
    for r in results:
        if r.policy == LEROBOT:
            lerobot.setdefault(key(r), []).append(r)
        elif r.policy == "diffusion":
            ours.setdefault(key(r), []).append(r)
    for k, theirs in lerobot.items():
        mine = ours.get(k, [])
        if len(mine) < 2 or len(theirs) < 2:
            continue
        parts = []
        intervals = []
        for label, group in (("robostack", mine), ("LeRobot", theirs)):
            n = sum(r.episodes for r in group)
            succ = round(sum(r.success_rate * r.episodes for r in group))
            lo, hi = wilson_interval(succ, n)
            intervals.append((lo, hi))
            per_seed = "/".join(f"{100 * r.success_rate:.1f}" for r in group)
            ranges = sorted({r.seed_range for r in group})
            parts.append(
                f"{label} {100 * succ / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) over {len(group)} training seeds "
                f"x {n // len(group)} {'/'.join(ranges)} episodes (per seed {per_seed}%)"
            )
        (a_lo, a_hi), (b_lo, b_hi) = intervals
        verdict = (
            "robostack beats LeRobot (intervals separate)"
            if a_lo > b_hi
            else "LeRobot beats robostack (intervals separate)"
            if b_lo > a_hi
            else "no separation: neither beats the other"
        )
        t_ours = sum(r.train_seconds for r in mine)
        t_theirs = sum(r.train_seconds for r in theirs)
        speed = (
            f"; training {t_theirs / t_ours:.2f}x faster over the seeds"
            if t_ours > 0 and t_theirs > 0
            else ""
        )
        lines.append(f"{k[0]} {k[2]} {k[3]} steps: " + "; ".join(parts) + f": {verdict}{speed}")
    return lines


def write_report(suite: str, results: list[RunResult], out_dir: Path) -> None:
    """Print the table and comparisons; write results.md, results.json and results.png (earlier rows kept)."""
    results = merge_previous(results, out_dir)
    headers = [
        "run",
        "task",
        "policy",
        "success (95% CI)",
        "eval seeds",
        "train s",
        "samples/s",
        "latency p50/p99 ms",
        "jerk",
    ]
    rows = [
        (
            r.name, r.task, r.policy, f"{100 * r.success_rate:.0f}% ({100 * r.ci_low:.0f}-{100 * r.ci_high:.0f})",
            f"{r.episodes} {r.seed_range}", f"{r.train_seconds:.0f}", f"{r.samples_per_s:.0f}",
            f"{r.latency_p50_ms:.1f} / {r.latency_p99_ms:.1f}", f"{r.rms_jerk:.3f}",
        )
        for r in results
    ]  # fmt: skip
    ratios = lerobot_ratios(results) + seed_pooled_comparison(results)
    print("\n" + format_table(headers, rows) + "".join(f"\n{line}" for line in ratios))
    write_results(results, out_dir)
    (out_dir / "results.md").write_text(
        f"# robostack bench --suite {suite} ({time.strftime('%Y-%m-%d')})\n\n"
        + format_markdown(headers, rows)
        + "\n"
        + "".join(f"\n- {line}" for line in ratios)
        + ("\n" if ratios else "")
    )
    from robostack.utils.plots import plot_bench

    plot_bench([asdict(r) for r in results], out_dir / "results.png")
