"""``robostack bench``."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark suite (configs/bench/*.yaml): datasets, training, evaluation"
    )
    p.add_argument(
        "--suite",
        default="smoke",
        help="smoke | standard | dart, recovery, obs_noise (ablations) | dppo, o2o, gpc, interactive (methods) | path to a suite YAML",
    )
    p.add_argument("--out", default=None, help="results folder (default: runs/bench-<suite>)")
    p.add_argument("--only", default="", help="comma-separated run names to run")
    p.add_argument("--eval-workers", type=int, default=2)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from robostack.bench.runner import run_suite

    out = args.out or f"runs/bench-{args.suite}"
    results = run_suite(args.suite, out, args.eval_workers, [x for x in args.only.split(",") if x] or None)
    print(f"\n{len(results)} run(s); report: {out}/results.md, chart: {out}/results.png")
    return 0
