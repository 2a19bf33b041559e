"""``robostack train`` and ``robostack eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robostack.cli.choices import algorithms, policy_families

EPILOG = """Overrides: any config field as --a.b=value, e.g. --optim.lr=3e-4 --policy.unet.down_dims=[64,128,256]
--policy.num_inference_steps=16 --eval.every=1000. The resolved config is saved as <out>/config.yaml."""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a policy on an episode store", epilog=EPILOG)
    p.add_argument(
        "--algo",
        default="bc",
        choices=algorithms("train"),
        metavar="ALGO",
        help="algorithm: %(choices)s (default bc)",
    )
    p.add_argument(
        "--policy",
        choices=policy_families(),
        metavar="FAMILY",
        help="policy family: %(choices)s (or policy.type in --config)",
    )
    p.add_argument(
        "--data", action="append", help="episode store (or data.path in --config); iql/famo2o: repeatable"
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", help="cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=cmd_train, accepts_overrides=True)

    p = sub.add_parser("eval", help="evaluate a policy in simulation")
    p.add_argument(
        "--policy", required=True, help="training run folder, policy checkpoint folder or exported model.onnx"
    )
    p.add_argument("--task", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--seeds",
        default="selection",
        choices=["train-eval", "selection", "test"],
        help="seed range (robostack/eval/seeds.py): choose recipes, steps and chunk lengths on 'selection' "
        "(default), report on 'test'",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="first seed instead of a range's start (recorded as the range it falls in, or 'custom')",
    )
    p.add_argument("--video", default=None, help="folder for one video per worker")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--n-action-steps",
        type=int,
        default=None,
        help="actions executed per chunk (default: the policy's own)",
    )
    p.add_argument(
        "--num-steps",
        type=int,
        default=None,
        help="DDIM / flow integration steps per chunk (default: the policy's own; PyTorch policies only)",
    )
    p.add_argument(
        "--ros",
        action="store_true",
        help="closed loop through ROS 2 (sim_robot_node + policy_node processes over DDS); needs an exported .onnx",
    )
    p.set_defaults(func=cmd_eval)


def resolve_train_config(args: argparse.Namespace, overrides: list[str]):
    """The algorithm's typed config: --config file (or the run's own on --resume), then flags, then overrides."""
    from robostack.algos.registry import get_algorithm
    from robostack.config import apply_overrides, from_dict, load_yaml
    from robostack.errors import RobostackError

    data = load_yaml(args.config) if args.config else {}
    if args.resume and not args.config and (Path(args.out) / "config.yaml").exists():
        data = load_yaml(Path(args.out) / "config.yaml")
    data.setdefault("policy", {})
    data.setdefault("data", {})
    if args.policy:
        data["policy"]["type"] = args.policy
    if args.data:
        data["data"]["path"] = args.data[0]
        if len(args.data) > 1:
            if args.algo == "bc":
                raise RobostackError(
                    "--algo bc trains on one store (combine stores with robostack data merge)"
                )
            data["data"]["more"] = list(args.data[1:])
    for name in ("steps", "device", "seed"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    data = apply_overrides(data, overrides)
    cfg = from_dict(get_algorithm(args.algo, "train").config_cls, data)
    # Check the policy section against its family's typed config now, not after loading the data.
    from robostack.policies.registry import make_config

    make_config(cfg.policy["type"], **{k: v for k, v in cfg.policy.items() if k != "type"})
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from robostack.algos.registry import run_algorithm

    cfg = resolve_train_config(args, getattr(args, "overrides", []))
    run = run_algorithm(args.algo, "train", cfg, args.out, resume=args.resume)
    print(f"trained {cfg.policy['type']} ({args.algo}) for {cfg.steps} steps -> {run}")
    last_eval = sorted(run.glob("checkpoints/*/eval.json"))
    if last_eval:
        from robostack.eval.evaluate import EvalResult

        print(EvalResult(**json.loads(last_eval[-1].read_text())).table())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from robostack.eval.evaluate import evaluate

    if args.ros:
        return _eval_ros(args)
    result = evaluate(
        args.policy,
        args.task,
        args.episodes,
        args.workers,
        _first_seed(args),
        args.video,
        n_action_steps=args.n_action_steps,
        num_steps=args.num_steps,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        print(result.table())
    return 0


def _first_seed(args: argparse.Namespace) -> int:
    from robostack.eval.seeds import seed_range

    if args.episodes < 1:
        from robostack.errors import RobostackError

        raise RobostackError("--episodes must be at least 1")
    return args.seed if args.seed is not None else seed_range(args.seeds).seeds(args.episodes).start


def _eval_ros(args: argparse.Namespace) -> int:
    from robostack.errors import RobostackError
    from robostack.eval.evaluate import check_policy_fits_task
    from robostack.ros.closed_loop import ClosedLoopConfig, run_closed_loop
    from robostack.runtime.loader import is_exported_model, read_any_spec
    from robostack.utils.table import format_table

    if not is_exported_model(args.policy):
        raise RobostackError("--ros evaluates an exported model: run `robostack export` and pass the .onnx")
    if args.num_steps:
        raise RobostackError("--num-steps: an exported model fixes its steps (re-export with --steps K)")
    if args.n_action_steps is not None and args.n_action_steps < 1:
        raise RobostackError(f"--n-action-steps must be at least 1, got {args.n_action_steps}")
    check_policy_fits_task(read_any_spec(args.policy), args.task)
    res = run_closed_loop(
        ClosedLoopConfig(args.policy, args.task, args.episodes, _first_seed(args), args.n_action_steps or 0)
    )
    if args.json:
        print(json.dumps(res.to_json(), indent=1))
        return 0
    st = res.policy_status
    rows = [
        ("success", f"{100 * res.success_rate:.1f}% ({res.successes}/{res.episodes})"),
        ("95% interval", f"{100 * res.ci95[0]:.1f}% - {100 * res.ci95[1]:.1f}%"),
        ("policy rate achieved", f"{st.get('rate_hz', 0)} Hz (target {st.get('target_rate_hz', 0)})"),
        ("obs-to-command ms p50/p99 (no inference)", str(st.get("obs_to_command_ms_p50_p99"))),
        ("inference ms p50/p99", str(st.get("inference_ms_p50_p99"))),
        ("wall time", f"{res.seconds:.1f} s"),
    ]
    print(format_table([f"{args.task} through ROS 2: {Path(args.policy).name}", ""], rows))
    return 0
