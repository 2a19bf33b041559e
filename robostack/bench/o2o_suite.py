"""The ``o2o`` entries of a bench suite (``configs/bench/o2o.yaml``): IQL and FamO2O offline on a mixed-quality
dataset, then online in simulation, with the same data, budget and seeds; each run's offline and final policies are
evaluated on the same test seeds, the online curve (train-eval seeds) is drawn, and pooled results compare the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robostack.algos.iql import IQLConfig
from robostack.algos.o2o import O2OConfig, O2OData, OnlinePhase, train_offline
from robostack.bench.verdicts import pct, separation
from robostack.eval.evaluate import evaluate
from robostack.eval.metrics import wilson_interval
from robostack.eval.seeds import seed_range
from robostack.policies.loading import resolve_policy_folder
from robostack.train.run_log import read_metrics
from robostack.utils.table import format_markdown

RESULT = "o2o_result.json"


def run_o2o(
    entries: list[dict[str, Any]],
    out_dir: Path,
    workers: int,
    make_dataset: Callable[[str, Path], Path],
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """``make_dataset(recipe, out_dir)`` is the runner's (it owns the recipes)."""
    results = []
    for e in entries:
        folder = out_dir / "o2o" / e["name"]
        if (folder / RESULT).is_file():  # every finished entry is in the report, selected or not
            if not only or e["name"] in only:
                print(f"\n== {e['name']}: done before, reading {folder / RESULT}")
            results.append(json.loads((folder / RESULT).read_text()))
            continue
        if only and e["name"] not in only:
            continue
        if folder.exists():  # interrupted: the online phase cannot resume, so the entry starts again
            import shutil

            shutil.rmtree(folder)
        data = make_dataset(e["dataset"], out_dir)
        print(f"\n== {e['name']}: {e['algo']} offline {e['offline_steps']} steps on {e['dataset']}, then "
              f"{e['online_env_steps']} environment steps of {e['task']}")  # fmt: skip
        cfg = O2OConfig(
            algo=e["algo"], data=O2OData(path=str(data)), steps=int(e["offline_steps"]), seed=int(e.get("seed", 0)),
            eval_episodes=int(e.get("curve_episodes", 20)), eval_workers=workers,
            save_every=int(e["offline_steps"]), log_every=1000,
            online=OnlinePhase(task=e["task"], env_steps=int(e["online_env_steps"]), envs=int(e.get("envs", 8)),
                               eval_every=int(e.get("eval_every", 5000))),
            iql=IQLConfig(**e.get("iql", {})), policy=dict(e.get("policy", {})),
        )  # fmt: skip
        train_offline(cfg, folder)
        episodes = int(e.get("test_episodes", 50))
        first = seed_range("test").seeds(episodes).start
        row = {"name": e["name"], "task": e["task"], "algo": e["algo"], "seed": cfg.seed, "dataset": e["dataset"],
               "offline_steps": cfg.steps, "online_env_steps": cfg.online.env_steps, "test_seeds": [first, first + episodes - 1]}  # fmt: skip
        for phase, run in (("offline", folder), ("online", folder / "online")):
            r = evaluate(resolve_policy_folder(run), e["task"], episodes, workers, first, progress=False)
            row[phase] = {"successes": r.successes, "episodes": r.episodes, "success_rate": r.success_rate,
                          "ci95": list(r.ci95)}  # fmt: skip
        row["curve"] = [
            (m["step"], m["eval_success_rate"])
            for m in read_metrics(folder / "online" / "metrics.jsonl")
            if "eval_success_rate" in m
        ]
        (folder / RESULT).write_text(json.dumps(row, indent=1))
        print(f"{e['name']}: offline {pct(row['offline'])} -> online {pct(row['online'])} (test seeds)")
        results.append(row)
    return results


def pooled(rows: list[dict[str, Any]], phase: str) -> dict[str, Any]:
    s = sum(r[phase]["successes"] for r in rows)
    n = sum(r[phase]["episodes"] for r in rows)
    return {"successes": s, "episodes": n, "success_rate": s / n, "ci95": list(wilson_interval(s, n))}


def write_o2o_report(results: list[dict[str, Any]], out_dir: Path) -> Path:
    rows = [
        (r["task"], r["algo"], r["seed"], pct(r["offline"]), pct(r["online"]), r["online_env_steps"])
        for r in results
    ]
    text = "# o2o suite: offline, then online (test seeds)\n\n" + format_markdown(
        ["task", "algo", "seed", "offline", "after online", "online env steps"], rows
    )
    lines = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["task"], r["algo"]), []).append(r)
    for (task, algo), rs in groups.items():
        off, on = pooled(rs, "offline"), pooled(rs, "online")
        lines.append(f"- {task} {algo} ({len(rs)} seed(s)): offline {pct(off)} -> online {pct(on)}: online is "
                     f"{separation(on, off)} against offline")  # fmt: skip
    for task in sorted({t for t, _ in groups}):
        if (task, "iql") in groups and (task, "famo2o") in groups:
            f, i = pooled(groups[(task, "famo2o")], "online"), pooled(groups[(task, "iql")], "online")
            lines.append(f"- {task}: FamO2O {pct(f)} vs IQL {pct(i)} after online: FamO2O {separation(f, i)}")
    text += "\n\n" + "\n".join(lines) + "\n"
    path = out_dir / "o2o.md"
    path.write_text(text)
    plot_curves(results, out_dir / "o2o.png")
    return path


def plot_curves(results: list[dict[str, Any]], out: Path) -> Path:
    """Success (train-eval seeds) against online environment steps, one panel per task, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in results})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    colors = {"iql": "tab:blue", "famo2o": "tab:orange"}
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in results if r["task"] == task):
            if r["curve"]:
                x, y = zip(*r["curve"], strict=True)
                ax.plot(x, y, "o-", color=colors.get(r["algo"]), alpha=0.7, label=f"{r['algo']} s{r['seed']}")
        ax.set(
            title=task,
            xlabel="online environment steps",
            ylabel="success (train-eval seeds)",
            ylim=(-0.02, 1.02),
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
