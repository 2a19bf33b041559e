"""The standard suite's push pair (robostack compiled vs LeRobot eager), training only, side by side in one process
exactly as ``robostack bench`` times it, with a cold or a warm Inductor cache. Writes a JSON line per run to
benchmarks/results/train_pair.jsonl.

    .venv/bin/python benchmarks/train_pair.py --cache cold [--seed 0] [--out runs/train-pair]

``--cache cold`` points Inductor (and the AOTAutograd/FX graph caches inside it) at an empty folder, as on a
machine's first compiled run; ``warm`` runs the same pair a second time on that folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", choices=["cold", "warm"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/train-pair")
    ap.add_argument("--cache-dir", default="", help="with --cache warm: the folder a cold run filled")
    ap.add_argument("--results", default="benchmarks/results/train_pair.jsonl")
    args = ap.parse_args()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="inductor-cold-")
    if args.cache == "cold" and any(Path(cache).iterdir()):
        raise SystemExit(f"{cache} is not empty: a cold run needs an empty cache folder")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # before torch is imported

    from robostack.bench.runner import SIDE_BY_SIDE_CHUNK, load_suite, start_run
    from robostack.train.run_log import recorded_train_seconds
    from robostack.utils.generators import alternate

    out = Path(args.out) / f"{args.cache}-seed{args.seed}"
    if out.exists():
        shutil.rmtree(out)
    runs = {r["name"]: r for r in load_suite("standard")["runs"]}
    pair = []
    for name in ("push-diffusion", "push-lerobot"):
        run = dict(runs[name])
        run["overrides"] = {**run["overrides"], "seed": args.seed}
        pair.append(run)
    pending = [start_run(r, out, 2) for r in pair]
    t0 = time.perf_counter()
    values = alternate([p.training for p in pending], SIDE_BY_SIDE_CHUNK)
    wall = time.perf_counter() - t0
    ours = recorded_train_seconds(out / "runs" / "push-diffusion")
    theirs = float(values[1][1])
    row = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cache": args.cache,
        "cache_dir": cache,
        "seed": args.seed,
        "robostack_train_s": round(ours, 1),
        "lerobot_train_s": round(theirs, 1),
        "ratio": round(theirs / ours, 3),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(row))
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
