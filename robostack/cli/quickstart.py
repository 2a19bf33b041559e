"""``robostack quickstart``: the main job, one readable pipeline whose stages each write into one run folder.

Stage 1 (data): expert ``push`` demonstrations -> validate -> dataset summary -> trajectory plot.
Later stages (train -> evaluate -> export -> ROS 2 closed loop) extend this same function.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from robostack.errors import RobostackError


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    """Run folder; every stage writes its output here."""
    task: str = "push"
    episodes: int = 100
    workers: int = 2
    seed: int = 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart", help="the main job on built-in defaults (demos -> validate -> summary -> plot)"
    )
    p.add_argument("--out", default=QuickstartConfig.out)
    p.add_argument("--episodes", type=int, default=QuickstartConfig.episodes)
    p.add_argument("--workers", type=int, default=QuickstartConfig.workers)
    p.add_argument("--seed", type=int, default=QuickstartConfig.seed)
    p.set_defaults(func=cmd_quickstart)


def _stage(n: int, title: str) -> None:
    print(f"\n== stage {n}: {title}", flush=True)


def run_quickstart(cfg: QuickstartConfig) -> dict:
    from robostack.data.buffer import load_buffer
    from robostack.data.info import format_summary, store_summary
    from robostack.data.validate import validate_store
    from robostack.sim.demos import DemoConfig, generate_demos
    from robostack.utils.plots import plot_push_trajectories

    run = Path(cfg.out)
    store = run / "demos.zarr"
    if store.exists():
        shutil.rmtree(store)  # the quickstart is reproducible from its config, so it starts clean
    run.mkdir(parents=True, exist_ok=True)
    (run / "quickstart.json").write_text(json.dumps(asdict(cfg), indent=1))
    t0 = time.perf_counter()

    _stage(1, f"{cfg.episodes} expert '{cfg.task}' demonstrations -> {store}")
    summary = generate_demos(
        DemoConfig(
            task=cfg.task,
            episodes=cfg.episodes,
            quality="expert",
            out=str(store),
            workers=cfg.workers,
            seed=cfg.seed,
        )
    )
    print(summary.table())

    _stage(2, "validate the store")
    errors = [f for f in validate_store(store) if f.severity == "error"]
    if errors:
        raise RobostackError(f"{store}: {errors[0].message}")
    print(f"{store}: ok")

    _stage(3, "dataset summary")
    info = store_summary(store)
    print(format_summary(info))

    _stage(4, "trajectory plot")
    png = plot_push_trajectories(load_buffer(store, ["obs/state", "obs/object"]), run / "trajectories.png")
    print(f"wrote {png}")

    result = {
        "store": str(store),
        "episodes": info["episodes"],
        "success_rate": info["success_rate"],
        "env_steps_per_s": summary.steps_per_s,
        "plot": str(png),
        "seconds": time.perf_counter() - t0,
    }
    (run / "result.json").write_text(json.dumps(result, indent=1))
    print(f"\nquickstart done in {result['seconds']:.1f} s; results in {run}/")
    return result


def cmd_quickstart(args: argparse.Namespace) -> int:
    run_quickstart(
        QuickstartConfig(out=args.out, episodes=args.episodes, workers=args.workers, seed=args.seed)
    )
    return 0
