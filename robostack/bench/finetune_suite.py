"""The ``finetune`` entries of a bench suite (``configs/bench/dppo.yaml``): after the suite's runs have behaviour-cloned
the starting policies, each entry fine-tunes one online (``dppo`` or ``ppo``) and evaluates the start and the last
checkpoint on the same test seeds; the report is a table (start, final, change, the issue's goal) and the curves of
success against environment steps."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from robostack.algos.registry import get_algorithm, run_algorithm
from robostack.bench.verdicts import pct, separation
from robostack.config import apply_overrides, from_dict
from robostack.errors import RobostackError
from robostack.eval.evaluate import evaluate
from robostack.eval.seeds import seed_range
from robostack.policies.loading import resolve_policy_folder
from robostack.train.run_log import read_metrics
from robostack.utils.table import format_markdown

RESULT = "finetune_result.json"
# The fields of an entry that are not the algorithm's config.
ENTRY_KEYS = ("name", "from", "test_episodes", "overrides")


def actions_per_decision(policy_folder: Path) -> int:
    return int(json.loads((policy_folder / "policy.json").read_text())["config"]["n_action_steps"])


def entry_config(e: dict[str, Any], start: Path) -> Any:
    """The fine-tuning config an entry describes (its algorithm's fields, ``overrides`` as dotted names)."""
    data = {k: v for k, v in e.items() if k not in ENTRY_KEYS}
    sets = [f"{k}={v}" for k, v in (e.get("overrides") or {}).items()]
    return from_dict(
        get_algorithm(e["algo"], "finetune").config_cls,
        apply_overrides({**data, "from_run": str(start)}, sets),
    )


def _eval_row(folder: Path, task: str, episodes: int, workers: int) -> dict[str, Any]:
    first = seed_range("test").seeds(episodes).start
    r = evaluate(folder, task, episodes, workers, first, progress=False)
    return {"successes": r.successes, "episodes": r.episodes, "success_rate": r.success_rate, "ci95": list(r.ci95),
            "rms_jerk": r.rms_jerk, "mean_length": r.mean_length, "test_seeds": [first, first + episodes - 1]}  # fmt: skip


def run_finetunes(
    entries: list[dict[str, Any]], out_dir: Path, workers: int, only: list[str] | None = None
) -> list[dict[str, Any]]:
    results = []
    for e in entries:
        folder = out_dir / "finetune" / e["name"]
        if (folder / RESULT).is_file():  # a finished entry is a result; rerun it by deleting its folder
            if not only or e["name"] in only:
                print(f"\n== {e['name']}: done before, reading {folder / RESULT}")
            results.append(json.loads((folder / RESULT).read_text()))
            continue
        if only and e["name"] not in only:
            continue
        start = out_dir / "runs" / e["from"]
        if not (start / "checkpoints").is_dir():
            raise RobostackError(
                f"finetune entry {e['name']}: starting run not trained: {start} (with --only, name it too: "
                f"--only {e['from']},{e['name']})"
            )
        start_policy = resolve_policy_folder(start)
        cfg = entry_config(e, start)
        if folder.exists():  # interrupted: on-policy fine-tuning starts fresh
            shutil.rmtree(folder)
        per_iter = cfg.envs * cfg.steps_per_iteration * actions_per_decision(start_policy)
        print(f"\n== {e['name']}: {cfg.algo} from {e['from']}, {cfg.iterations} iterations x up to {per_iter} "
              f"environment steps in {cfg.task}")  # fmt: skip
        t0 = time.perf_counter()
        run_algorithm(cfg.algo, "finetune", cfg, folder)
        seconds = time.perf_counter() - t0
        episodes = int(e.get("test_episodes", 200))
        start_file = out_dir / "finetune" / f"start-{e['from']}-{episodes}.json"
        if start_file.is_file():  # two entries from one start share its evaluation
            start_row = json.loads(start_file.read_text())
        else:
            start_row = _eval_row(start_policy, cfg.task, episodes, workers)
            start_file.write_text(json.dumps(start_row, indent=1))
        final_row = _eval_row(resolve_policy_folder(folder), cfg.task, episodes, workers)
        metrics = read_metrics(folder / "metrics.jsonl")
        done = {m["step"]: m["env_steps"] for m in metrics if "env_steps" in m}
        row = {
            "name": e["name"], "algo": cfg.algo, "task": cfg.task, "from": e["from"], "seed": cfg.seed,
            "iterations": cfg.iterations, "env_steps": max(done.values()), "seconds": seconds,
            "start": start_row, "final": final_row,
            "curve": [(done[m["step"]], m["eval_success_rate"]) for m in metrics if "eval_success_rate" in m],
            "per_iteration_s": {k: sum(m.get(k, 0.0) for m in metrics if "decisions" in m) / cfg.iterations
                                for k in ("policy_s", "sim_s", "update_s")},
            "rollout_curve": [(m["env_steps"], m["episode_success_rate"]) for m in metrics
                              if "episode_success_rate" in m],
        }  # fmt: skip
        (folder / RESULT).write_text(json.dumps(row, indent=1))
        print(
            f"{e['name']}: start {pct(start_row)} -> {cfg.algo} {pct(final_row)} (test seeds, {seconds:.0f} s)"
        )
        results.append(row)
    return results


def goal_line(r: dict[str, Any], target: float = 0.9, gain: float = 0.2) -> str:
    s, f = r["start"], r["final"]
    met = f["success_rate"] >= target and f["success_rate"] - s["success_rate"] >= gain
    return (f"- {r['name']} ({r['algo']}): {pct(s)} -> {pct(f)}, {100 * (f['success_rate'] - s['success_rate']):+.1f} "
            f"points, {separation(f, s)} against the start; goal >= {100 * target:.0f}% and >= +{100 * gain:.0f} "
            f"points {'met' if met else 'missed'} ({r['env_steps']} environment steps, {r['seconds']:.0f} s)")  # fmt: skip


def write_finetune_report(results: list[dict[str, Any]], out_dir: Path) -> Path:
    rows = [(r["task"], r["algo"], r["from"], pct(r["start"]), pct(r["final"]),
             f"{r['start']['rms_jerk']:.3f} -> {r['final']['rms_jerk']:.3f}", r["env_steps"], f"{r['seconds']:.0f}",
             " / ".join(f"{r['per_iteration_s'][k]:.1f}" for k in ("policy_s", "sim_s", "update_s")))
            for r in results]  # fmt: skip
    text = "# Fine-tuning suite: start and last checkpoint on the test seeds\n\n" + format_markdown(
        [
            "task",
            "algo",
            "start run",
            "start",
            "fine-tuned",
            "action jerk",
            "env steps",
            "seconds",
            "s per iteration: policy / sim / update",
        ],
        rows,
    )
    text += "\n\n" + "\n".join(goal_line(r) for r in results) + "\n"
    path = out_dir / "finetune.md"
    path.write_text(text)
    plot_finetune_curves(results, out_dir / "finetune.png")
    return path


def plot_finetune_curves(results: list[dict[str, Any]], out: Path) -> Path:
    """Success against environment steps: checkpoints on train-eval seeds (lines), training rollouts (faint), the
    start and the last checkpoint on the test seeds (stars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in results})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, r in enumerate(r for r in results if r["task"] == task):
            color = f"C{i}"
            if r["rollout_curve"]:
                x, y = zip(*r["rollout_curve"], strict=True)
                ax.plot(x, y, "-", color=color, alpha=0.25)
            if r["curve"]:
                x, y = zip(*r["curve"], strict=True)
                ax.plot(x, y, "o-", color=color, label=f"{r['algo']} from {r['from']} (train-eval seeds)")
            ax.plot(
                [0, r["env_steps"]],
                [r["start"]["success_rate"], r["final"]["success_rate"]],
                "*",
                ms=11,
                color=color,
                label=f"{r['algo']}: start and final (test seeds)",
            )
        ax.axhline(0.9, color="grey", ls=":", lw=1)
        ax.set(title=task, xlabel="environment steps", ylabel="success", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
