"""The ``interactive`` entries of a bench suite (``configs/bench/interactive.yaml``): RLIF and HG-DAgger from the same
weak behaviour-cloned start, with the same simulated intervener rule, expert level, environment-step budget and seeds.

Per entry: the fine-tuning run, its start and final policy on the same test seeds without interventions, the
learning curve (train-eval seeds) and the intervention rate against environment steps. Per (task, expert level): the
degraded expert acting alone on the same test seeds, so "RLIF ends above its expert" is measured, not assumed. The
report pools the seeds and compares RLIF with HG-DAgger and with the expert, saying "above" only where intervals
separate.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from robostack.algos.registry import run_algorithm
from robostack.bench.finetune_suite import entry_config
from robostack.bench.verdicts import pct, separation
from robostack.errors import RobostackError
from robostack.eval.evaluate import evaluate
from robostack.eval.metrics import wilson_interval
from robostack.eval.seeds import seed_range
from robostack.policies.loading import resolve_policy_folder
from robostack.sim.expert_alone import expert_success
from robostack.train.run_log import read_metrics
from robostack.utils.table import format_markdown

RESULT = "interactive_result.json"
ALGOS = ("rlif", "hg-dagger")


def _rate(successes: int, episodes: int, **extra: Any) -> dict[str, Any]:
    return {"successes": successes, "episodes": episodes, "success_rate": successes / episodes,
            "ci95": list(wilson_interval(successes, episodes)), **extra}  # fmt: skip


def _policy_row(folder: Path, task: str, episodes: int, workers: int) -> dict[str, Any]:
    first = seed_range("test").seeds(episodes).start
    r = evaluate(folder, task, episodes, workers, first, progress=False)
    return _rate(r.successes, r.episodes, test_seeds=[first, first + episodes - 1])


def _shared_row(path: Path) -> dict[str, Any] | None:
    """A row entries share (one start, one expert level), computed once per suite folder."""
    return json.loads(path.read_text()) if path.is_file() else None


def _keep(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=1))
    return row


def run_interactive(
    entries: list[dict[str, Any]], out_dir: Path, workers: int, only: list[str] | None = None
) -> list[dict[str, Any]]:
    results = []
    for e in entries:
        folder = out_dir / "interactive" / e["name"]
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
                f"interactive entry {e['name']}: starting run not trained: {start} (with --only, name it too: "
                f"--only {e['from']},{e['name']})"
            )
        cfg = entry_config(e, start)
        if folder.exists():  # interrupted: the entry starts again (a bench entry is one uninterrupted result)
            shutil.rmtree(folder)
        level = cfg.expert_level
        print(f"\n== {e['name']}: {cfg.algo} from {e['from']}, {cfg.intervener.rule} intervener, expert level "
              f"{level}, {cfg.env_steps} environment steps of {cfg.task}, seed {cfg.seed}")  # fmt: skip
        t0 = time.perf_counter()
        run_algorithm(cfg.algo, "finetune", cfg, folder)
        seconds = time.perf_counter() - t0
        episodes = int(e.get("test_episodes", 50))
        first = seed_range("test").seeds(episodes).start
        start_file = out_dir / "interactive" / f"start-{e['from']}-{episodes}.json"
        start_row = _shared_row(start_file) or _keep(
            start_file, _policy_row(resolve_policy_folder(start), cfg.task, episodes, workers)
        )
        expert_file = out_dir / "interactive" / f"expert-{cfg.task}-{level}-{episodes}.json"
        expert_row = _shared_row(expert_file) or _keep(
            expert_file,
            _rate(
                *expert_success(cfg.task, level, first, episodes), test_seeds=[first, first + episodes - 1]
            ),
        )
        metrics = read_metrics(folder / "metrics.jsonl")
        row = {
            "name": e["name"], "algo": cfg.algo, "task": cfg.task, "from": e["from"], "seed": cfg.seed,
            "intervener": cfg.intervener.rule, "expert_level": level, "env_steps": cfg.env_steps, "seconds": seconds,
            "start": start_row, "final": _policy_row(resolve_policy_folder(folder), cfg.task, episodes, workers),
            "expert": expert_row,
            "curve": [(m["step"], m["eval_success_rate"]) for m in metrics if "eval_success_rate" in m],
            "interventions": [(m["step"], m["intervention_rate"]) for m in metrics if "intervention_rate" in m],
        }  # fmt: skip
        (folder / RESULT).write_text(json.dumps(row, indent=1))
        print(f"{e['name']}: start {pct(start_row)} -> {cfg.algo} {pct(row['final'])}; expert alone "
              f"{pct(expert_row)} (test seeds, {seconds:.0f} s)")  # fmt: skip
        results.append(row)
    return results


def _pooled(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return _rate(sum(r[key]["successes"] for r in rows), sum(r[key]["episodes"] for r in rows))


def write_interactive_report(results: list[dict[str, Any]], out_dir: Path) -> Path:
    rows = [
        (r["task"], r["expert_level"], r["algo"], r["seed"], pct(r["start"]), pct(r["final"]), pct(r["expert"]),
         f"{100 * r['interventions'][-1][1]:.1f}%" if r["interventions"] else "-", r["env_steps"], f"{r['seconds']:.0f}")
        for r in results
    ]  # fmt: skip
    text = "# interactive suite: learning from interventions (success without interventions, test seeds)\n\n"
    text += format_markdown(
        ["task", "expert level", "algo", "seed", "start", "final", "expert alone", "last intervention rate",
         "env steps", "seconds"], rows,
    )  # fmt: skip
    groups: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        groups.setdefault((r["task"], r["expert_level"]), {}).setdefault(r["algo"], []).append(r)
    lines = []
    for (task, level), by_algo in sorted(groups.items()):
        expert = next(iter(by_algo.values()))[0]["expert"]
        for algo, rs in by_algo.items():
            lines.append(f"- {task}, expert level {level} (alone {pct(expert)}): {algo} over {len(rs)} seed(s) "
                         f"{pct(_pooled(rs, 'final'))}, {separation(_pooled(rs, 'final'), expert)} against the expert")  # fmt: skip
        if all(a in by_algo for a in ALGOS):
            a, b = _pooled(by_algo["rlif"], "final"), _pooled(by_algo["hg-dagger"], "final")
            lines.append(
                f"- {task}, expert level {level}: RLIF {pct(a)} vs HG-DAgger {pct(b)}: RLIF {separation(a, b)}"
            )
    text += "\n\n" + "\n".join(lines) + "\n"
    path = out_dir / "interactive.md"
    path.write_text(text)
    plot_interactive(results, out_dir / "interactive.png")
    return path


def plot_interactive(results: list[dict[str, Any]], out: Path) -> Path:
    """Per (task, expert level): success without interventions (train-eval seeds) and the intervention rate against
    environment steps, one line per run; the expert alone (dashed) and the start (dotted) on the test seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["task"], r["expert_level"]) for r in results})
    fig, axes = plt.subplots(2, len(keys), figsize=(4.5 * len(keys), 6.4), squeeze=False)
    colors = {"rlif": "tab:blue", "hg-dagger": "tab:orange"}
    for col, (task, level) in enumerate(keys):
        top, bottom = axes[0][col], axes[1][col]
        rows = [r for r in results if (r["task"], r["expert_level"]) == (task, level)]
        for r in rows:
            c = colors.get(r["algo"], "tab:gray")
            for ax, series in ((top, r["curve"]), (bottom, r["interventions"])):
                if series:
                    x, y = zip(*series, strict=True)
                    ax.plot(x, y, "o-", color=c, alpha=0.7, ms=3, label=f"{r['algo']} s{r['seed']}")
        top.axhline(rows[0]["expert"]["success_rate"], color="k", ls="--", lw=1, label="expert alone (test)")
        for start in sorted({r["start"]["success_rate"] for r in rows}):
            top.axhline(start, color="tab:gray", ls=":", lw=1.2, label="start (test)")
        top.set(title=f"{task}, expert level {level}", ylabel="success, no interventions", ylim=(-0.02, 1.02))
        bottom.set(xlabel="environment steps", ylabel="intervention rate", ylim=(-0.02, 1.02))
        top.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
