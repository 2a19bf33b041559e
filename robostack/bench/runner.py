"""``robostack bench``: run benchmark recipes (dataset recipe + policy config + evaluation) and report them.

A suite (``configs/bench/<name>.yaml``) lists runs; each names a dataset recipe (``datasets/recipes/*.yaml``), a
policy config (``configs/policies/*.yaml``, or ``lerobot_diffusion`` to train LeRobot's DiffusionPolicy with the
same settings) and an evaluation. Datasets are generated once per suite output folder and reused. Results: a
Markdown table, a JSON file and a PNG chart in ``--out``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robostack.bench.recipes import train_config, trained_steps
from robostack.bench.report import write_report
from robostack.bench.results import RunResult
from robostack.compare.lerobot_diffusion import LEROBOT
from robostack.config import load_yaml
from robostack.errors import RobostackError
from robostack.eval.seeds import first_seed
from robostack.sim.base import REPO_ROOT
from robostack.train.config import TrainConfig
from robostack.utils.generators import alternate, drain

SUITES = REPO_ROOT / "configs" / "bench"
RECIPES = REPO_ROOT / "datasets" / "recipes"


def load_suite(name_or_path: str) -> dict[str, Any]:
    p = Path(name_or_path)
    if not p.suffix:
        p = SUITES / f"{name_or_path}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in SUITES.glob("*.yaml")))
        raise RobostackError(f"unknown benchmark suite '{name_or_path}' (choose from {known})")
    suite = load_yaml(p)
    if not (suite.get("runs") or suite.get("o2o")):
        raise RobostackError(f"{p}: no runs")
    suite.setdefault("runs", [])
    names = [r["name"] for r in suite["runs"]]
    for r in suite["runs"]:
        if r.get("side_by_side") and (r["side_by_side"] not in names or r["side_by_side"] == r["name"]):
            raise RobostackError(
                f"{p}: run '{r['name']}' trains side by side with unknown run '{r['side_by_side']}'"
            )
    for f in suite.get("finetune") or []:
        missing = [k for k in ("name", "algo", "from", "task") if k not in f]
        if missing or f["from"] not in names:
            raise RobostackError(
                f"{p}: finetune entry '{f.get('name')}' needs name, algo, task and a starting run among the suite's runs"
                + (f" (missing: {', '.join(missing)})" if missing else f" (unknown run: {f['from']})")
            )
    for f in suite.get("interactive") or []:
        missing = [k for k in ("name", "algo", "from", "task") if k not in f]
        if missing or f["from"] not in names:
            raise RobostackError(
                f"{p}: interactive entry '{f.get('name')}' needs name, algo, task and a starting run among the suite's runs"
                + (f" (missing: {', '.join(missing)})" if missing else f" (unknown run: {f['from']})")
            )
    tuned = {f["name"] for f in suite.get("finetune") or []}
    for g in suite.get("generated_data") or []:
        bad = [
            s.get("from") for s in g.get("sources", []) if "recipe" not in s and s.get("from") not in tuned
        ]
        if (
            bad
            or len(g.get("sources", [])) < 2
            or not all(k in g for k in ("name", "task", "episodes", "policy"))
        ):
            raise RobostackError(
                f"{p}: generated_data entry '{g.get('name')}' needs name, task, episodes, policy and two or more "
                "sources, each a recipe or a finetune entry"
                + (f" (unknown: {', '.join(map(str, bad))})" if bad else "")
            )
    for c in suite.get("compose") or []:
        unknown = [n for n in c.get("parents", []) if n not in names]
        if len(c.get("parents", [])) < 2 or unknown or "task" not in c:
            raise RobostackError(
                f"{p}: compose entry '{c.get('name')}' needs a task and two or more parents among the suite's runs"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
    return suite


def make_dataset(recipe_name: str, out_dir: Path) -> Path:
    from robostack.data import EpisodeStore
    from robostack.sim.demos import DemoConfig, generate_demos

    recipe = load_yaml(RECIPES / f"{recipe_name}.yaml")
    path = out_dir / "datasets" / f"{recipe_name}.zarr"
    if (path / "zarr.json").exists():
        have = EpisodeStore(path).n_episodes
        if have >= recipe["episodes"]:
            return path
        # a benchmark killed while generating: the recipe rebuilds the same store, so nothing is lost
        print(
            f"dataset {recipe_name}: {have} of {recipe['episodes']} episodes (generation interrupted); remaking it"
        )
        shutil.rmtree(path)
    print(
        f"dataset {recipe_name}: {recipe['episodes']} {recipe.get('quality', 'expert')} '{recipe['task']}' episodes"
    )
    cfg = DemoConfig(out=str(path), **recipe)
    print(generate_demos(cfg).table())
    return path


# Fields that decide what a run learns (the rest only change how it is computed). ``steps`` is one: the learning-rate
# schedule spans all of them, so continuing a finished 20k run to 40k is not what a fresh 40k recipe trains.
RECIPE_FIELDS = ("policy", "data", "optim", "ema", "seed", "steps")


def recipe_changes(folder: Path, cfg: TrainConfig) -> list[str]:
    """Dotted names of the recipe fields on which the run in ``folder`` differs from ``cfg``."""
    saved = load_yaml(folder / "config.yaml")
    now = json.loads(json.dumps(asdict(cfg), default=str))  # tuples -> lists, as the saved YAML has them

    def diff(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [d for k in sorted(set(a) | set(b)) for d in diff(a.get(k), b.get(k), f"{prefix}{k}.")]
        return [] if a == b else [prefix.rstrip(".")]

    return [d for f in RECIPE_FIELDS for d in diff(saved.get(f), now.get(f), f"{f}.")]


def set_aside(folder: Path) -> Path:
    """Move a run trained on an older recipe out of the way (never deleted: its numbers may be in a report)."""
    n = 1
    while (dest := folder.with_name(f"{folder.name}.previous-{n}")).exists():
        n += 1
    folder.rename(dest)
    return dest


@dataclass
class PendingRun:
    """A suite entry ready to train. ``training`` (None when its run folder is already trained) is advanced to its
    end, alone or side by side with another entry's; ``finish`` takes its return value, evaluates the policy and
    returns the report row."""

    training: Generator[int, None, Any] | None
    finish: Callable[[Any], RunResult]

    def train_alone(self) -> Any:
        """Run the training (if any) to its end; returns what ``finish`` takes."""
        return drain(self.training) if self.training is not None else None


def start_run(run: dict[str, Any], out_dir: Path, eval_workers: int) -> PendingRun:
    from robostack.algos.bc import iter_train
    from robostack.eval.evaluate import evaluate
    from robostack.train.run_log import read_metrics, recorded_train_seconds

    name = run["name"]
    data = make_dataset(run["dataset"], out_dir)
    overrides = [f"{k}={v}" for k, v in (run.get("overrides") or {}).items()]
    ev = run.get("eval", {})
    folder = out_dir / "runs" / name
    if run["policy"] == LEROBOT:
        from robostack.bench.lerobot_run import eval_lerobot, iter_train_lerobot

        cfg = train_config(run.get("like", "diffusion_push"), data, overrides)
        print(f"\n== {name}: train LeRobot DiffusionPolicy for {cfg.steps} steps on {run['dataset']}")
        timeline: list[tuple[int, float]] = []
        return PendingRun(
            iter_train_lerobot(cfg, data, timeline=timeline),
            lambda trained: eval_lerobot(run, cfg, folder, ev, *trained, timeline=timeline),
        )
    cfg = train_config(run["policy"], data, overrides)
    print(f"\n== {name}: train {cfg.policy['type']} for {cfg.steps} steps on {run['dataset']}")
    done = trained_steps(folder)
    if done is not None and (changed := recipe_changes(folder, cfg)):
        kept = set_aside(folder)
        print(f"{name}: the recipe changed ({', '.join(changed)}); the earlier run is kept in {kept}")
        done = None
    training = None
    if done is None:
        if folder.exists():  # killed before its first checkpoint: nothing in it is worth keeping
            shutil.rmtree(folder)
        training = iter_train(cfg, folder)
    elif done < cfg.steps:  # an interrupted benchmark picks up its run from the last checkpoint
        print(f"resuming {name} at step {done}")
        training = iter_train(cfg, folder, resume=True)

    def finish(_: Any) -> RunResult:
        metrics = read_metrics(folder / "metrics.jsonl")
        sps = [m["samples_per_s"] for m in metrics if "samples_per_s" in m]
        train_s = recorded_train_seconds(folder)
        result = evaluate(
            folder,
            ev["task"],
            ev.get("episodes", 200),
            ev.get("workers", eval_workers),
            first_seed(ev, ev.get("episodes", 200)),
            n_action_steps=ev.get("n_action_steps"),
            num_steps=ev.get("num_steps"),
        )
        print(result.table())
        return RunResult.from_eval(
            run, cfg.policy["type"], cfg.steps, train_s, sps[-1] if sps else 0.0, result
        )

    return PendingRun(training, finish)


def run_one(run: dict[str, Any], out_dir: Path, eval_workers: int) -> RunResult:
    pending = start_run(run, out_dir, eval_workers)
    return pending.finish(pending.train_alone())


# Steps each training runs before the other's turn: ~1.5-3 s, far shorter than the minutes over which a shared VM's
# CPU speed drifts, so both trainings meet the same phases; the switch itself costs a few cold caches per chunk.
SIDE_BY_SIDE_CHUNK = 50


def run_side_by_side(
    a: dict[str, Any], b: dict[str, Any], out_dir: Path, eval_workers: int, chunk: int = SIDE_BY_SIDE_CHUNK
) -> list[RunResult]:
    """Train two entries in one process, alternating every ``chunk`` steps (each with the whole machine while it
    runs, its suspended time not counted), then evaluate both: their training times compare like for like on a
    machine whose speed moves with time."""
    pending = [start_run(a, out_dir, eval_workers), start_run(b, out_dir, eval_workers)]
    trainings = [p.training for p in pending]
    if all(t is not None for t in trainings):
        print(f"\n== {a['name']} and {b['name']} train side by side, alternating every {chunk} steps")
        values = alternate(trainings, chunk)
        partners = [b["name"], a["name"]]
    else:  # one of them was trained before: its time was measured then, alone
        values = [p.train_alone() for p in pending]
        partners = ["", ""]
    results = []
    for p, value, partner in zip(pending, values, partners, strict=True):
        results.append(p.finish(value))
        results[-1].side_by_side = partner
    return results


def run_suite(
    name: str, out: str | Path, eval_workers: int = 2, only: list[str] | None = None
) -> list[RunResult]:
    suite = load_suite(name)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = [r for r in suite["runs"] if not only or r["name"] in only]
    results: list[RunResult] = []
    done: set[str] = set()
    for run in selected:
        if run["name"] in done:
            continue
        partner = partner_of(run, selected)
        if partner is None:
            results.append(run_one(run, out_dir, eval_workers))
        else:
            chunk = int(suite.get("side_by_side_chunk", SIDE_BY_SIDE_CHUNK))
            results.extend(run_side_by_side(run, partner, out_dir, eval_workers, chunk))
            done.add(partner["name"])
        write_report(suite.get("name", name), results, out_dir)
    if suite.get("o2o"):
        from robostack.bench.o2o_suite import run_o2o, write_o2o_report

        rows = run_o2o(suite["o2o"], out_dir, eval_workers, make_dataset, only)
        if rows:
            print(f"o2o report: {write_o2o_report(rows, out_dir)}")
    if suite.get("finetune"):
        from robostack.bench.finetune_suite import run_finetunes, write_finetune_report

        rows = run_finetunes(suite["finetune"], out_dir, eval_workers, only)
        if rows:
            print(f"fine-tuning report: {write_finetune_report(rows, out_dir)}")
    if suite.get("interactive"):
        from robostack.bench.interactive_suite import run_interactive, write_interactive_report

        rows = run_interactive(suite["interactive"], out_dir, eval_workers, only)
        if rows:
            print(f"interactive report: {write_interactive_report(rows, out_dir)}")
    for entry in suite.get("generated_data") or []:
        if only and entry["name"] not in only:
            continue
        from robostack.bench.generated_data import run_generated_data, write_generated_report

        report = run_generated_data(entry, out_dir, eval_workers, make_dataset)
        print(f"generated-data report: {write_generated_report(report, out_dir)}")
    if suite.get("compose"):
        from robostack.bench.gpc_suite import run_compositions, write_gpc_report

        reports = run_compositions(suite["compose"], out_dir, eval_workers, only)
        if reports:
            print(f"GPC report: {write_gpc_report(reports, out_dir)}")
    return results


def partner_of(run: dict[str, Any], selected: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The selected entry ``run`` trains side by side with (either one may name the other in ``side_by_side``)."""
    for other in selected:
        if other is not run and (
            other.get("side_by_side") == run["name"] or run.get("side_by_side") == other["name"]
        ):
            return other
    return None
