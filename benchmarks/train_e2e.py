"""End-to-end training speed, robostack vs LeRobot's DiffusionPolicy: whole training runs, not one step.

    .venv/bin/python benchmarks/train_e2e.py [--policy diffusion_push] [--dataset push_expert_200] [--steps 3000]
        [--out benchmarks/results/train_e2e_push]

Each side trains the same recipe (policy config, data, optimiser, schedule, batch, steps) on the same store:
robostack through ``robostack.train.train`` exactly as ``robostack bench`` runs it (compiled loss, fused AdamW, EMA,
validation every val_every steps, checkpoints), LeRobot through the bench's LeRobot loop (its DiffusionPolicy, for-each
AdamW, no EMA). One thread each. With two ``--cores`` both run at the same time, one per core, so each has the other
as its neighbour; with one they run one after the other on it. robostack's one-off compile counts in its wall time
and starts from an empty Inductor cache (a first run on a fresh machine), unless ``--warm-cache``.
Prints wall time, loop samples/s and the ratios; writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_side(side: str, args: argparse.Namespace) -> dict:
    import torch

    from robostack.bench.runner import make_dataset, train_config

    torch.set_num_threads(1)
    data = make_dataset(args.dataset, Path(args.work))
    overrides = [f"steps={args.steps}", "compile=true", f"seed={args.seed}"]
    cfg = train_config(args.policy, data, overrides)
    from robostack.algos.bc import train
    from robostack.bench.lerobot_run import train_lerobot
    from robostack.train.run_log import read_metrics, recorded_train_seconds

    t0 = time.perf_counter()  # imports done: both walls start at the same point
    if side == "lerobot":
        timeline: list[tuple[int, float]] = []
        _, loop_s = train_lerobot(cfg, data, progress=False, timeline=timeline)
    else:
        folder = Path(args.work) / "runs" / f"e2e-{os.getpid()}"
        train(cfg, folder, progress=False)
        loop_s = recorded_train_seconds(folder)
        metrics = read_metrics(folder / "metrics.jsonl")
        timeline = [(m["step"], m["train_s"]) for m in metrics if "train_s" in m]
    wall = time.perf_counter() - t0
    # Steady state: the last two thirds of the run, past compilation and warm-up, from the same kind of timeline.
    late = [(s, t) for s, t in timeline if s >= cfg.steps // 3]
    if len(late) >= 2:
        steady = (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])
    else:  # a run too short to have two log points there
        steady = loop_s / cfg.steps
    samples = cfg.steps * cfg.optim.batch_size
    return {"side": side, "steps": cfg.steps, "batch": cfg.optim.batch_size, "wall_s": wall, "loop_s": loop_s,
            "samples_per_s": samples / loop_s, "wall_samples_per_s": samples / wall, "steady_ms_per_step":
            1e3 * steady, "steady_samples_per_s": cfg.optim.batch_size / steady}  # fmt: skip


def _collect(side: str, proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"train_e2e: the {side} run failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default="diffusion_push")
    p.add_argument("--dataset", default="push_expert_200")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/train-e2e", help="datasets and run folders")
    p.add_argument("--out", default="benchmarks/results/train_e2e_push")
    p.add_argument("--warm-cache", action="store_true", help="keep Inductor's on-disk cache (default: empty)")
    p.add_argument(
        "--cores", default="", help="comma-separated CPU cores (default: the first two this process has)"
    )
    p.add_argument("--side", choices=["robostack", "lerobot"], help=argparse.SUPPRESS)
    p.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:  # a child: one side, pinned to one core
        if args.core is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {args.core})
        print(json.dumps(run_side(args.side, args)))
        return

    from robostack.bench.runner import make_dataset

    make_dataset(args.dataset, Path(args.work))  # once, before the timed runs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    cache = None
    if not args.warm_cache:
        cache = tempfile.TemporaryDirectory(prefix="inductor-")
        env["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0, 1]
    cores = [int(c) for c in args.cores.split(",")] if args.cores else have[:2]
    res = {}
    procs = {}
    for i, side in enumerate(["robostack", "lerobot"]):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--core", str(cores[i % len(cores)])]
        procs[side] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        if len(cores) == 1:  # one core: one after the other
            res[side] = _collect(side, procs.pop(side))
    for side, proc in procs.items():
        res[side] = _collect(side, proc)
    if cache is not None:
        cache.cleanup()
    r, lr = res["robostack"], res["lerobot"]
    rows = [
        (s["side"], f"{s['steps']}", f"{s['wall_s']:.1f}", f"{s['loop_s']:.1f}", f"{s['samples_per_s']:.0f}",
         f"{s['wall_samples_per_s']:.0f}", f"{s['steady_ms_per_step']:.1f}", f"{s['steady_samples_per_s']:.0f}")
        for s in (r, lr)
    ]  # fmt: skip
    head = ["run", "steps", "wall s", "loop s", "loop samples/s", "end-to-end samples/s", "steady ms/step",
            "steady samples/s"]  # fmt: skip
    ratio_wall = lr["wall_s"] / r["wall_s"]
    ratio_loop = r["samples_per_s"] / lr["samples_per_s"]
    ratio_steady = r["steady_samples_per_s"] / lr["steady_samples_per_s"]
    from robostack.utils.table import format_markdown, format_table

    summary = (
        f"robostack vs LeRobot: {ratio_wall:.2f}x faster end to end (wall time of the whole run, "
        f"{'warm' if args.warm_cache else 'cold'} compile included), {ratio_loop:.2f}x in loop samples/s, "
        f"{ratio_steady:.2f}x in steady-state samples/s (last two thirds of the steps)"
    )
    print(format_table(head, rows))
    print(summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"policy": args.policy, "dataset": args.dataset, "steps": args.steps, "warm_cache": args.warm_cache,
              "date": time.strftime("%Y-%m-%d"), "runs": [r, lr], "ratio_wall": ratio_wall,
              "ratio_loop_samples_per_s": ratio_loop, "ratio_steady_samples_per_s": ratio_steady}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    cmd = " ".join(["python", "benchmarks/train_e2e.py", *sys.argv[1:]])
    out.with_suffix(".md").write_text(
        f"# End-to-end training, {args.policy} on {args.dataset} ({record['date']})\n\n`{cmd}`: "
        + (
            "both runs at the same time, one core each"
            if len(cores) > 1
            else "one run after the other, one core"
        )
        + ", one thread each.\n\n"
        + format_markdown(head, rows)
        + f"\n\n{summary}\n"
    )


if __name__ == "__main__":
    main()
