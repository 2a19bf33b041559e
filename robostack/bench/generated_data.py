"""The ``generated_data`` entry of a bench suite (``configs/bench/dppo.yaml``): do policies trained on generated
demonstrations do as well as ones trained on scripted ("human-like") ones?

Each source makes a dataset of the same number of episodes: a fine-tuning entry's final policy rolled out (kept
successes, source ``generated``) or a dataset recipe (scripted noisy or expert demos). A fresh policy with one recipe
trains on each; every dataset, and each fresh policy's rollouts on the test seeds (every episode kept, so success is
measured on them), are measured alike (``robostack data quality``): success, length, path, RMS jerk, mean |da| and
phase variance. The report is two tables and the datasets' tool paths.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robostack.bench.finetune_suite import RESULT as FINETUNE_RESULT
from robostack.bench.verdicts import pct, separation
from robostack.errors import RobostackError
from robostack.eval.dataset_quality import measure, plot_paths
from robostack.eval.seeds import seed_range
from robostack.policies.loading import resolve_policy_folder
from robostack.utils.table import format_markdown

RESULT = "generated_result.json"


def source_dataset(src: dict[str, Any], entry: dict[str, Any], out_dir: Path, workers: int,
                   make_dataset: Callable[[str, Path], Path]) -> Path:  # fmt: skip
    """The store a source names: a recipe's, or ``episodes`` rollouts of a fine-tuned policy (``keep``: success, the
    default, or all)."""
    if "recipe" in src:
        return make_dataset(src["recipe"], out_dir)
    from robostack.eval.generate import MAX_ATTEMPTS_PER_EPISODE, GenerateConfig, generate

    policy = out_dir / "finetune" / src["from"]
    episodes = int(entry["episodes"])
    if not (policy / "checkpoints").is_dir():
        raise RobostackError(f"generated_data source {src['name']}: fine-tuning entry not run: {policy}")
    path = out_dir / "datasets" / f"{entry['name']}-{src['name']}.zarr"
    if _have(path) >= episodes:
        return path
    keep = src.get("keep", "success")
    tuned = (
        json.loads((policy / FINETUNE_RESULT).read_text()) if (policy / FINETUNE_RESULT).is_file() else None
    )
    if keep == "success" and tuned and tuned["final"]["success_rate"] < 1 / MAX_ATTEMPTS_PER_EPISODE:
        # generate would roll out up to MAX_ATTEMPTS_PER_EPISODE x episodes (hours of failures) and still fall short
        raise RobostackError(
            f"generated_data source {src['name']}: {src['from']} succeeds {100 * tuned['final']['success_rate']:.1f}% "
            f"after fine-tuning, too rarely to generate {episodes} successful episodes"
        )
    print(f"dataset {path.name}: {episodes} rollouts of {src['from']} (kept: {keep})")
    # appending resumes an interrupted generation; seeds continue after the store's largest
    print(generate(GenerateConfig(policy=str(policy), task=entry["task"], episodes=episodes - _have(path),
                                  out=str(path), keep=keep, workers=workers)).table())  # fmt: skip
    return path


def _have(path: Path) -> int:
    from robostack.data import EpisodeStore

    return EpisodeStore(path).n_episodes if (path / "zarr.json").exists() else 0


def run_generated_data(
    entry: dict[str, Any], out_dir: Path, workers: int, make_dataset: Callable[[str, Path], Path]
) -> dict[str, Any]:
    from robostack.algos.bc import train
    from robostack.bench.recipes import train_config, trained_steps
    from robostack.eval.generate import GenerateConfig, generate

    root = out_dir / "generated" / entry["name"]
    if (root / RESULT).is_file():
        print(f"\n== {entry['name']}: done before, reading {root / RESULT}")
        return json.loads((root / RESULT).read_text())
    root.mkdir(parents=True, exist_ok=True)
    episodes = int(entry["episodes"])
    test = int(entry.get("test_episodes", 50))
    first = seed_range("test").seeds(test).start
    overrides = [f"{k}={v}" for k, v in (entry.get("overrides") or {}).items()]
    rows = []
    for src in entry["sources"]:
        data = source_dataset(src, entry, out_dir, workers, make_dataset)
        have = _have(data)
        if have != episodes:
            raise RobostackError(
                f"{data}: {have} episodes, the comparison needs {episodes} from every source"
            )
        run = root / "runs" / src["name"]
        cfg = train_config(entry["policy"], data, overrides)
        if trained_steps(run) != cfg.steps:
            if run.exists():
                shutil.rmtree(run)
            print(
                f"\n== {entry['name']}: train {cfg.policy['type']} for {cfg.steps} steps on {src['name']} ({data.name})"
            )
            train(cfg, run)
        rollouts = root / "rollouts" / f"{src['name']}.zarr"
        if rollouts.exists():
            shutil.rmtree(rollouts)
        generate(GenerateConfig(policy=str(resolve_policy_folder(run)), task=entry["task"], episodes=test,
                                out=str(rollouts), keep="all", workers=workers, seed=first))  # fmt: skip
        row = {"source": src["name"], "dataset": str(data), "data": asdict(measure(data)),
               "policy": asdict(measure(rollouts)), "test_seeds": [first, first + test - 1]}  # fmt: skip
        print(f"{src['name']}: policy {pct(row['policy'])} on test seeds")
        rows.append(row)
    result = {
        "name": entry["name"],
        "task": entry["task"],
        "episodes": episodes,
        "steps": cfg.steps,
        "rows": rows,
    }
    plot_paths([r["dataset"] for r in rows], root / "paths.png")
    (root / RESULT).write_text(json.dumps(result, indent=1))
    return result


def _quality_cells(q: dict[str, Any]) -> tuple[str, ...]:
    return (
        pct(q),
        f"{q['length_mean']:.1f} +- {q['length_std']:.1f}",
        "-" if q["path_length"] is None else f"{q['path_length']:.3f}",
        f"{q['rms_jerk']:.4f}",
        f"{q['mean_abs_delta_action']:.4f}",
        f"{q['phase_variance']:.4f}",
    )


def write_generated_report(result: dict[str, Any], out_dir: Path) -> Path:
    head = ["source", "success (95% CI)", "length", "path", "RMS jerk", "mean |da|", "phase var"]
    rows = result["rows"]
    text = (
        f"# Generated data ({result['name']}, {result['task']}): {result['episodes']} episodes per source\n\n"
    )
    text += "## The datasets\n\n" + format_markdown(
        head, [(r["source"], *_quality_cells(r["data"])) for r in rows]
    )
    text += (f"\n\n## Fresh policies trained on each ({result['steps']} steps, one recipe), their rollouts on test "
             f"seeds {rows[0]['test_seeds'][0]}-{rows[0]['test_seeds'][1]}\n\n")  # fmt: skip
    text += format_markdown(head, [(r["source"], *_quality_cells(r["policy"])) for r in rows])
    by = {r["source"]: r for r in rows}
    lines = []
    for gen in (s for s in by if "generated" in str(by[s]["data"]["sources"])):
        for ref in (s for s in by if s != gen and "generated" not in str(by[s]["data"]["sources"])):
            g, h = by[gen]["policy"], by[ref]["policy"]
            smoother = g["rms_jerk"] < h["rms_jerk"] and g["phase_variance"] < h["phase_variance"]
            lines.append(f"- policy on {gen} data vs on {ref} data: success {separation(g, h)} "
                         f"({pct(g)} vs {pct(h)}); rollouts {'smoother and less variable' if smoother else 'not both smoother and less variable'} "
                         f"(jerk {g['rms_jerk']:.4f} vs {h['rms_jerk']:.4f}, phase var {g['phase_variance']:.4f} vs {h['phase_variance']:.4f})")  # fmt: skip
    text += (
        "\n\n" + "\n".join(lines) + f"\n\nTool paths of each dataset: generated/{result['name']}/paths.png\n"
    )
    path = out_dir / f"generated-{result['name']}.md"
    path.write_text(text)
    return path
