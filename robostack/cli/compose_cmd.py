"""``robostack compose``: combine trained diffusion/flow policies at inference time (GPC), and search the weights."""

from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser, search: bool) -> None:
    p.add_argument(
        "--policy",
        action="append",
        required=search,
        default=None,
        help="parent run or policy folder (repeat)",
    )
    p.add_argument("--out", required=search, default=None, help="folder to create")
    p.add_argument(
        "--n-action-steps", type=int, default=None, help="actions per chunk (default: first parent's)"
    )
    p.add_argument("--num-steps", type=int, default=0, help="shared sampler steps (default: the parents')")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compose",
        help="compose diffusion/flow policies into one policy (GPC); 'compose search' finds the weights",
        description="robostack compose --policy A --policy B --weights 0.7,0.3 --out COMPOSED/  |  "
        "robostack compose search --policy A --policy B --task TASK --out DIR",
    )
    _common(p, search=False)
    p.add_argument("--weights", default=None, help="convex weights, one per --policy, e.g. 0.7,0.3")
    p.set_defaults(func=cmd_compose)
    actions = p.add_subparsers(dest="compose_action", required=False, parser_class=type(p))
    s = actions.add_parser(
        "search",
        help="sweep the weights on selection seeds, confirm the best on test seeds",
    )
    _common(s, search=True)
    s.add_argument("--task", required=True)
    s.add_argument("--grid", type=float, default=0.1, help="weight spacing (default 0.1)")
    s.add_argument("--episodes", type=int, default=50, help="selection-seed episodes per weighting")
    s.add_argument("--test-episodes", type=int, default=200, help="test-seed episodes for the result")
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=cmd_search)


def cmd_compose(args: argparse.Namespace) -> int:
    from robostack.errors import RobostackError
    from robostack.policies.composition import compose, parse_weights, save_composite
    from robostack.utils.table import format_table

    if not args.policy or not args.out or not args.weights:
        raise RobostackError("compose needs --policy (at least two), --weights and --out")
    policy, stats, prov = compose(
        args.policy, parse_weights(args.weights), args.n_action_steps, args.num_steps
    )
    out = save_composite(policy, stats, prov, args.out)
    c = prov["composition"]
    rows = [
        (f"parent {i}", f"{p} ({f}), weight {w:g}")
        for i, (p, f, w) in enumerate(zip(c["parents"], c["families"], policy.weights, strict=True))
    ]
    rows += [
        ("sampler / steps", f"{policy.sampler} / {policy.num_steps}"),
        (
            "chunk (T_p / T_o / T_a)",
            f"{policy.config.horizon} / {policy.config.n_obs_steps} / " f"{policy.config.n_action_steps}",
        ),
        ("observations", ", ".join(policy.spec.obs)),
        ("composite", str(out)),
    ]
    print(format_table(["compose", ""], rows))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from robostack.algos.gpc_search import SearchConfig, run_search, tables

    for flag, v in (("--episodes", args.episodes), ("--test-episodes", args.test_episodes)):
        if v < 1:
            from robostack.errors import RobostackError

            raise RobostackError(f"{flag} must be at least 1, got {v}")
    cfg = SearchConfig(
        policies=args.policy,
        task=args.task,
        grid=args.grid,
        episodes=args.episodes,
        test_episodes=args.test_episodes,
        workers=args.workers,
        out=args.out,
        n_action_steps=args.n_action_steps,
        num_steps=args.num_steps,
    )
    print(tables(run_search(cfg)))
    return 0
