"""``robostack generate``: roll a trained policy out and store its episodes as demonstrations."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="roll a trained policy out in simulation and store its episodes (source 'generated')",
    )
    p.add_argument("--policy", required=True, help="training run, policy folder or exported .onnx")
    p.add_argument("--task", required=True)
    p.add_argument("--episodes", type=int, required=True, help="episodes to store")
    p.add_argument("--out", required=True, help="store to create, or to append to when it exists")
    p.add_argument(
        "--keep",
        default="success",
        choices=["success", "all"],
        help="success: roll out until --episodes successes are stored (default) | all: every rollout",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--seed", type=int, default=None, help="first seed (default: after the store's largest, else 0)"
    )
    p.add_argument("--fsync", action="store_true", help="fsync before every commit (power-loss safe)")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from robostack.eval.generate import GenerateConfig, generate

    cfg = GenerateConfig(
        policy=args.policy,
        task=args.task,
        episodes=args.episodes,
        out=args.out,
        keep=args.keep,
        workers=args.workers,
        seed=args.seed,
        fsync=args.fsync,
    )
    print(generate(cfg).table())
    return 0
