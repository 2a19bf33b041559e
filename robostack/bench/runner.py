"""``robostack bench``: run benchmark recipes (dataset recipe + policy config + evaluation) and report them.

A suite (``configs/bench/<name>.yaml``) lists runs; each names a dataset recipe (``datasets/recipes/*.yaml``), a
policy config (``configs/policies/*.yaml``, or ``lerobot_diffusion`` to train LeRobot's DiffusionPolicy with the
same settings) and an evaluation. Datasets are generated once per suite output folder and reused. Results: a
Markdown table, a JSON file and a PNG chart in ``--out``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from robostack.config import apply_overrides, from_dict, load_yaml
from robostack.errors import RobostackError
from robostack.eval.seeds import first_seed
from robostack.policies.loading import LAST
from robostack.sim.base import REPO_ROOT
from robostack.train.config import TrainConfig
from robostack.utils.generators import alternate, drain
from robostack.utils.table import format_markdown, format_table

SUITES = REPO_ROOT / "configs" / "bench"
RECIPES = REPO_ROOT / "datasets" / "recipes"
POLICIES = REPO_ROOT / "configs" / "policies"


def recipe_of(run: dict[str, Any]) -> str:
    """The policy config a suite entry trains (a LeRobot entry: the config it mirrors, ``like``)."""
    return run.get("like") or run["policy"]


@dataclass
class RunResult:
    name: str
    task: str
    policy: str
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
    recipe: str = ""
    """Policy config the run trained (LeRobot runs: the config they mirror); rows of older reports lack it."""
    side_by_side: str = ""
    """The run it trained alternating with in one process (``run_side_by_side``); empty when it trained alone."""
    seed_range: str = ""
    """Evaluation seed range (``robostack.eval.seeds``); empty in rows written before ranges were recorded."""

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


def load_suite(name_or_path: str) -> dict[str, Any]:
    p = Path(name_or_path)
    if not p.suffix:
        p = SUITES / f"{name_or_path}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in SUITES.glob("*.yaml")))
        raise RobostackError(f"unknown benchmark suite '{name_or_path}' (choose from {known})")
    suite = load_yaml(p)
    if not suite.get("runs"):
        raise RobostackError(f"{p}: no runs")
    names = [r["name"] for r in suite["runs"]]
    for r in suite["runs"]:
        if r.get("side_by_side") and (r["side_by_side"] not in names or r["side_by_side"] == r["name"]):
            raise RobostackError(
                f"{p}: run '{r['name']}' trains side by side with unknown run '{r['side_by_side']}'"
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


def train_config(policy_name: str, data: Path, overrides: list[str]) -> TrainConfig:
    cfg = load_yaml(POLICIES / f"{policy_name}.yaml")
    cfg = apply_overrides(cfg, [f"data.path={data}", "eval.episodes=0", *overrides])
    return from_dict(TrainConfig, cfg)


def trained_steps(folder: Path) -> int | None:
    """Step of the run's last checkpoint, or None when it has none (``checkpoints/last`` names ``step_NNNNNNNN``)."""
    last = folder / "checkpoints" / LAST
    if not last.is_file():
        return None
    return int(last.read_text().strip().removeprefix("step_"))


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
    if run["policy"] == "lerobot_diffusion":
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
        train_s = recorded_train_seconds(folder) or _throughput_train_seconds(metrics, cfg)
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


def _throughput_train_seconds(metrics: list[dict[str, Any]], cfg: TrainConfig) -> float:
    """Training time of runs written before train_s was logged, from the final running-average throughput."""
    sps = [m["samples_per_s"] for m in metrics if "samples_per_s" in m]
    return cfg.steps * cfg.optim.batch_size / sps[-1] if sps else 0.0


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
        write_report(suite.get("name", name), results, out_dir, suite["runs"])
    return results


def partner_of(run: dict[str, Any], selected: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The selected entry ``run`` trains side by side with (either one may name the other in ``side_by_side``)."""
    for other in selected:
        if other is not run and (
            other.get("side_by_side") == run["name"] or run.get("side_by_side") == other["name"]
        ):
            return other
    return None


def merge_previous(
    results: list[RunResult], out_dir: Path, runs: list[dict[str, Any]] | None = None
) -> list[RunResult]:
    """Keep rows of earlier invocations (``--only`` runs one entry at a time) unless rerun now; a row written
    before reports recorded the recipe takes it from the suite entry of the same name."""
    path = out_dir / "results.json"
    if not path.exists():
        return results
    fresh = {r.name for r in results}
    known = {f.name for f in fields(RunResult)}
    try:
        # fields this version does not know are dropped, ones it added take their defaults: rows of other
        # versions survive; a report that cannot be read at all is refused, never silently overwritten
        old = [
            RunResult(**{k: v for k, v in row.items() if k in known}) for row in json.loads(path.read_text())
        ]
    except (ValueError, TypeError, AttributeError) as exc:
        raise RobostackError(
            f"{path}: cannot read the earlier results ({type(exc).__name__}); move it aside to start a new report"
        ) from None
    recipes = {r["name"]: recipe_of(r) for r in runs or []}
    for r in old:
        r.recipe = r.recipe or recipes.get(r.name, "")
    return [r for r in old if r.name not in fresh] + results


def lerobot_ratios(results: list[RunResult]) -> list[str]:
    """robostack's diffusion run against LeRobot's on the same dataset: training time and success, side by side."""
    lines = []
    for lr in (r for r in results if r.policy == "lerobot-diffusion"):
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
        if r.policy == "lerobot-diffusion":
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
            ranges = sorted({r.seed_range or "unrecorded" for r in group})
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


def write_report(
    suite: str, results: list[RunResult], out_dir: Path, runs: list[dict[str, Any]] | None = None
) -> None:
    results = merge_previous(results, out_dir, runs)
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
            f"{r.episodes} {r.seed_range or 'unrecorded'}", f"{r.train_seconds:.0f}", f"{r.samples_per_s:.0f}",
            f"{r.latency_p50_ms:.1f} / {r.latency_p99_ms:.1f}", f"{r.rms_jerk:.3f}",
        )
        for r in results
    ]  # fmt: skip
    ratios = lerobot_ratios(results) + seed_pooled_comparison(results)
    print("\n" + format_table(headers, rows) + "".join(f"\n{line}" for line in ratios))
    (out_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    (out_dir / "results.md").write_text(
        f"# robostack bench --suite {suite} ({time.strftime('%Y-%m-%d')})\n\n"
        + format_markdown(headers, rows)
        + "\n"
        + "".join(f"\n- {line}" for line in ratios)
        + ("\n" if ratios else "")
    )
    from robostack.utils.plots import plot_bench

    plot_bench([asdict(r) for r in results], out_dir / "results.png")
