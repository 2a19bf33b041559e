"""``robostack compose search``: GPC's weight sweep, chosen on the selection seeds and confirmed on the test seeds.

Protocol (GPC §6.1, with the project's seed discipline, ``robostack.eval.seeds``): every grid weighting runs the same
``episodes`` seeds of the *selection* range; the best one (ties: the higher mean return, then grid order) is saved as
the composite; then the composite and each parent run the first ``test_episodes`` seeds of the *test* range, which is
what gets reported. The search's own numbers are never the result.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robostack.config import save_yaml
from robostack.errors import RobostackError
from robostack.eval.evaluate import EvalResult, evaluate
from robostack.eval.seeds import seed_range
from robostack.eval.weight_sweep import evaluate_weightings
from robostack.policies.composition import compose, save_composite
from robostack.utils.table import format_markdown, format_table

SEARCH_JSON = "search.json"


@dataclass
class SearchConfig:
    policies: list[str] = field(default_factory=list)
    """Parent run or policy folders (two or more)."""
    task: str = ""
    grid: float = 0.1
    """Weight spacing: two parents w in {0, grid, ..., 1}; more parents every point of the simplex on that grid."""
    episodes: int = 50
    """Selection-seed episodes per weighting."""
    test_episodes: int = 200
    """Test-seed episodes for the chosen composite and for each parent."""
    workers: int = 1
    out: str = ""
    n_action_steps: int | None = None
    """Actions executed per chunk (default: the first parent's)."""
    num_steps: int = 0
    """Denoising steps of the shared sampler (0: the sampler-setting parent's)."""


def weight_grid(n_parents: int, spacing: float) -> list[list[float]]:
    """Every convex weighting on the grid (two parents: first weight descending from 1 to 0)."""
    if not 0 < spacing <= 1:
        raise RobostackError(f"--grid must be in (0, 1], got {spacing}")
    n = round(1 / spacing)
    if abs(n * spacing - 1) > 1e-9:
        raise RobostackError(f"--grid must divide 1 evenly (0.1, 0.25, 0.5, ...), got {spacing}")
    points = [c for c in itertools.product(range(n, -1, -1), repeat=n_parents - 1) if sum(c) <= n]
    return [[round(x / n, 10) for x in c] + [round((n - sum(c)) / n, 10)] for c in points]


def search_and_test_seeds(episodes: int, test_episodes: int) -> tuple[list[int], list[int]]:
    """The selection seeds the sweep runs on and the test seeds the result is reported on (disjoint ranges)."""
    search = list(seed_range("selection").seeds(episodes))
    test = list(seed_range("test").seeds(test_episodes))
    if set(search) & set(test):
        raise RobostackError("search and test seeds overlap")  # the ranges are disjoint by construction
    return search, test


def choose(results: list[EvalResult]) -> int:
    """Index of the best weighting: success, then mean return, then the first in grid order."""
    return max(range(len(results)), key=lambda i: (results[i].successes, results[i].mean_return, -i))


def _row(name: str, r: EvalResult) -> dict[str, Any]:
    return {
        "name": name,
        "success_rate": r.success_rate,
        "successes": r.successes,
        "episodes": r.episodes,
        "ci95": list(r.ci95),
        "mean_return": r.mean_return,
        "rms_jerk": r.rms_jerk,
        "latency_p50_ms": r.latency_p50_ms,
        "seeds": [r.per_episode[0]["seed"], r.per_episode[-1]["seed"]] if r.per_episode else [],
    }


def _pct(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['success_rate']:.1f}% ({100 * lo:.0f}-{100 * hi:.0f})"


def verdict(test: list[dict[str, Any]]) -> str:
    """'beats' only where the intervals separate."""
    comp, parents = test[-1], test[:-1]
    best = max(parents, key=lambda r: r["success_rate"])
    if comp["ci95"][0] > best["ci95"][1]:
        return f"the composite beats the better parent ({best['name']}): the intervals separate"
    if comp["ci95"][1] < best["ci95"][0]:
        return f"the better parent ({best['name']}) beats the composite: the intervals separate"
    diff = 100 * (comp["success_rate"] - best["success_rate"])
    return f"no separation from the better parent ({best['name']}): {diff:+.1f} points, intervals overlap"


def run_search(cfg: SearchConfig, progress: bool = True) -> dict[str, Any]:
    if not cfg.out:
        raise RobostackError("--out is required")
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise RobostackError(f"{out}: exists and is not empty (choose another --out)")
    grid = weight_grid(len(cfg.policies), cfg.grid)
    search_seeds, test_seeds = search_and_test_seeds(cfg.episodes, cfg.test_episodes)
    policy, stats, prov = compose(cfg.policies, grid[0], cfg.n_action_steps, cfg.num_steps)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(asdict(cfg), out / "search_config.yaml")
    work = out / "candidate"
    save_composite(policy, stats, prov, work)
    t0 = time.perf_counter()
    swept = evaluate_weightings(work, cfg.task, grid, search_seeds, cfg.workers, progress=progress)
    print(f"weight search: {len(grid)} weightings x {len(search_seeds)} selection seeds in "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    best = choose(swept)
    search_seconds = time.perf_counter() - t0
    policy.set_weights(grid[best])
    final = save_composite(policy, stats, prov, out / "composed")
    shutil.rmtree(work)

    t1 = time.perf_counter()
    test_rows = []
    for i, parent in enumerate(cfg.policies):
        r = evaluate(
            parent, cfg.task, len(test_seeds), cfg.workers, test_seeds[0], progress=progress,
            n_action_steps=cfg.n_action_steps,
        )  # fmt: skip
        test_rows.append(_row(f"parent {i}: {Path(parent).name} ({prov['composition']['families'][i]})", r))
    r = evaluate(final, cfg.task, len(test_seeds), cfg.workers, test_seeds[0], progress=progress)
    test_rows.append(_row(f"composite {grid[best]}", r))
    report = {
        "task": cfg.task,
        "parents": prov["composition"]["parents"],
        "families": prov["composition"]["families"],
        "sampler": prov["composition"]["sampler"],
        "steps": policy.num_steps,
        "grid": grid,
        "search_seeds": [search_seeds[0], search_seeds[-1]],
        "test_seeds": [test_seeds[0], test_seeds[-1]],
        "search": [{"weights": w, **_row(str(w), r)} for w, r in zip(grid, swept, strict=True)],
        "chosen": grid[best],
        "test": test_rows,
        "verdict": verdict(test_rows),
        "search_seconds": search_seconds,
        "test_seconds": time.perf_counter() - t1,
        "composed": str(final),
    }
    (out / SEARCH_JSON).write_text(json.dumps(report, indent=1))
    (out / "search.md").write_text(markdown(report))
    plot_search(report, out / "search.png")
    return report


def tables(report: dict[str, Any]) -> str:
    sweep = format_table(
        [
            "weights",
            f"selection success ({report['search_seeds'][0]}-{report['search_seeds'][1]})",
            "mean return",
        ],
        [(str(s["weights"]), _pct(s), f"{s['mean_return']:.3f}") for s in report["search"]],
    )
    test = format_table(
        ["policy", f"test success ({report['test_seeds'][0]}-{report['test_seeds'][1]})", "jerk", "p50 ms"],
        [(r["name"], _pct(r), f"{r['rms_jerk']:.3f}", f"{r['latency_p50_ms']:.1f}") for r in report["test"]],
    )
    return f"{sweep}\n{test}\n{report['verdict']}"


def markdown(report: dict[str, Any]) -> str:
    sweep = format_markdown(
        ["weights", "selection success (95% CI)"], [(str(s["weights"]), _pct(s)) for s in report["search"]]
    )
    test = format_markdown(
        ["policy", "test success (95% CI)", "episodes"],
        [(r["name"], _pct(r), r["episodes"]) for r in report["test"]],
    )
    return (
        f"# GPC weight search on {report['task']} ({report['sampler']}, {report['steps']} steps)\n\n"
        f"Selection seeds {report['search_seeds']}; test seeds {report['test_seeds']}.\n\n{sweep}\n\n"
        f"Chosen on the selection seeds: {report['chosen']}.\n\n{test}\n\n{report['verdict']}.\n"
    )


def plot_search(report: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Selection success against the first parent's weight (error bars: 95% interval), with the test-seed results
    of the parents and of the chosen composite beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = report["search"]
    two = len(report["parents"]) == 2
    x = [s["weights"][0] for s in search] if two else list(range(len(search)))
    y = [s["success_rate"] for s in search]
    err = [
        [s["success_rate"] - s["ci95"][0] for s in search],
        [s["ci95"][1] - s["success_rate"] for s in search],
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label="selection seeds")
    for r, marker in zip(report["test"], ["s", "^", "v", "D"], strict=False):
        if r["name"].startswith("composite"):
            xt = report["chosen"][0] if two else report["grid"].index(report["chosen"])
        else:
            i = int(r["name"].split(":")[0].split()[1])
            w = [1.0 if j == i else 0.0 for j in range(len(report["parents"]))]
            xt = w[0] if two else report["grid"].index(w) if w in report["grid"] else 0
        lo, hi = r["ci95"]
        ax.errorbar(
            [xt],
            [r["success_rate"]],
            yerr=[[r["success_rate"] - lo], [hi - r["success_rate"]]],
            fmt=marker,
            capsize=3,
            label=f"test: {r['name']}",
        )
    ax.set(
        xlabel="weight of parent 0" if two else "grid index",
        ylabel="success rate",
        ylim=(-0.02, 1.05),
        title=f"GPC weight search, {report['task']}",
    )
    ax.legend(fontsize=7, loc="lower center")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
