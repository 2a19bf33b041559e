"""``robostack finetune``: improve a trained policy online in simulation with a registered fine-tuning algorithm."""

from __future__ import annotations

import argparse

from robostack.cli.choices import algorithms

EPILOG = """Overrides: any config field as --a.b=value, e.g. --sac.utd=2 --intervener.duration=6 --eval_every=2000.
The resolved config is saved as <out>/config.yaml."""

# flag -> config field, for the flags a fine-tuning config may have
FLAGS = {
    "from_run": "from_run", "task": "task", "env_steps": "env_steps", "envs": "envs", "workers": "workers",
    "seed": "seed", "expert_level": "expert_level", "intervener": "intervener.rule", "data": "data",
    "device": "device", "reference": "reference", "iterations": "iterations",
}  # fmt: skip


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a trained policy online in simulation", epilog=EPILOG)
    p.add_argument(
        "--algo", required=True, choices=algorithms("finetune"), metavar="ALGO", help="%(choices)s"
    )
    p.add_argument("--from", dest="from_run", help="training run or policy folder to start from")
    p.add_argument("--task", help="simulated task")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--env-steps", dest="env_steps", type=int)
    p.add_argument("--envs", type=int, help="environment copies stepped together")
    p.add_argument("--iterations", type=int, help="dppo: rollout-and-update iterations")
    p.add_argument("--workers", type=int, help="simulation processes (0: in this process)")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--expert-level", dest="expert_level", type=float, help="intervening expert's success level"
    )
    p.add_argument("--intervener", help="deviation | random | value")
    p.add_argument("--reference", help="value intervener's judge: a finished `finetune --algo sac` run")
    p.add_argument("--data", action="append", help="offline store mixed into the replay (repeatable)")
    p.add_argument("--device", help="cpu | cuda")
    p.add_argument(
        "--resume",
        action="store_true",
        help="rlif/sac: continue the killed run in --out from its last checkpoint",
    )
    p.set_defaults(func=cmd_finetune, accepts_overrides=True)


def resolve_config(args: argparse.Namespace, overrides: list[str]):
    from pathlib import Path

    from robostack.algos.registry import get_algorithm
    from robostack.config import apply_overrides, from_dict, load_yaml

    data = load_yaml(args.config) if args.config else {}
    saved = Path(args.out) / "config.yaml"
    if getattr(args, "resume", False) and not args.config and saved.exists():
        data = load_yaml(saved)  # the run's own config; flags and overrides still apply on top
    data["algo"] = args.algo
    sets = []
    for flag, key in FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if key == "data":
            data["data"] = list(value)
        else:
            sets.append(f"{key}={value}")
    data = apply_overrides(data, [*sets, *overrides])
    return from_dict(get_algorithm(args.algo, "finetune").config_cls, data)


def cmd_finetune(args: argparse.Namespace) -> int:
    from robostack.algos.registry import run_algorithm

    cfg = resolve_config(args, getattr(args, "overrides", []))
    run = run_algorithm(args.algo, "finetune", cfg, args.out, resume=args.resume)
    if hasattr(cfg, "iterations"):
        how = f"{cfg.iterations} iterations in {cfg.task}"
    elif cfg.task:
        how = f"{cfg.env_steps} environment steps"
    else:
        how = f"{len(cfg.data)} recorded session store(s)"
    print(f"fine-tuned with {args.algo} on {how} -> {run}")
    return 0
