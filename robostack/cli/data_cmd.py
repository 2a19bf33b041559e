"""``robostack data info|validate|merge|quality|import|export``."""

from __future__ import annotations

import argparse
import json

from robostack.errors import RobostackError


def add(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, check, merge and convert episode stores")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))

    p = dsub.add_parser("info", help="summary of a store")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = dsub.add_parser("validate", help="check a store; exit 0 when sound, 1 otherwise")
    p.add_argument("path")
    p.add_argument("--repair", action="store_true", help="drop an uncommitted tail (and nothing else)")
    p.add_argument("--quick", action="store_true", help="skip decoding every chunk")
    p.set_defaults(func=cmd_validate)

    p = dsub.add_parser(
        "merge",
        help="concatenate stores into a new one",
        description="Concatenate stores. Keys not every input has: --keys shared (default) leaves them out; "
        "--keys fill keeps them and fills the other stores' rows: policy_action, human_action and "
        "executed_action with the executed action, is_intervention with False, imitate with True, other keys "
        "with zeros. Each such key is named in the output.",
    )
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--keys", default="shared", choices=["shared", "fill"])
    p.set_defaults(func=cmd_merge)

    p = dsub.add_parser(
        "quality", help="compare datasets: success, length, path, jerk, |delta a|, variance across episodes"
    )
    p.add_argument("stores", nargs="+")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", default=None, help="PNG of each store's tool paths")
    p.set_defaults(func=cmd_quality)

    p = dsub.add_parser("view", help="open an episode in the Rerun viewer (or --save a .rrd recording)")
    p.add_argument("path")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--save", default=None, help="write a .rrd recording instead of opening the viewer")
    p.set_defaults(func=cmd_view)

    p = dsub.add_parser(
        "import", help="convert a robomimic HDF5, Diffusion Policy zarr or LeRobot v3 dataset"
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument(
        "--from", dest="fmt", required=True, choices=["robomimic", "diffusion-policy", "lerobot", "rosbag2"]
    )
    p.add_argument("--repo-id", default=None, help="LeRobot dataset name (default local/<folder name>)")
    p.add_argument("--topic-map", default=None, help="rosbag2: the policy node's topic map YAML")
    p.add_argument("--rate", type=float, default=20.0, help="rosbag2: control rate to resample to, Hz")
    p.add_argument(
        "--episodes-from", default=None, help="rosbag2: std_msgs/Bool topic, True while an episode runs"
    )
    p.add_argument(
        "--max-age", type=float, default=None, help="rosbag2: drop steps with an input older than S s"
    )
    p.add_argument("--task", default="", help="rosbag2: task name of the episodes")
    p.add_argument("--control-rate", type=float, default=10.0, help="Hz, for formats that do not record it")
    p.set_defaults(func=cmd_import)

    p = dsub.add_parser(
        "export", help="write a store as robomimic HDF5, Diffusion Policy zarr v2 or LeRobot v3"
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument(
        "--to", dest="fmt", required=True, choices=["robomimic", "diffusion-policy", "lerobot", "rosbag2"]
    )
    p.add_argument("--repo-id", default=None, help="LeRobot dataset name (default local/<folder name>)")
    p.add_argument(
        "--topic-map", default=None, help="rosbag2: topic map YAML naming each observation's topic"
    )
    p.set_defaults(func=cmd_export)


def cmd_info(args: argparse.Namespace) -> int:
    from robostack.data.info import format_summary, store_summary

    s = store_summary(args.path)
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    from robostack.eval.dataset_quality import measure, plot_paths, quality_table

    results = [measure(s) for s in args.stores]
    print(json.dumps([r.to_json() for r in results], indent=1) if args.json else quality_table(results))
    if args.plot:
        plot_paths(args.stores, args.plot)
        if not args.json:
            print(f"paths: {args.plot}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from robostack.data.store import EpisodeStore
    from robostack.data.view import view_episode

    store_episodes = EpisodeStore(args.path).n_episodes
    if not 0 <= args.episode < store_episodes:
        raise RobostackError(f"{args.path}: episode {args.episode} out of range (store has {store_episodes})")
    n = view_episode(args.path, args.episode, args.save)
    print(
        f"episode {args.episode}: {n} steps "
        + (f"saved to {args.save}" if args.save else "sent to the viewer")
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from robostack.data.validate import repair_store, validate_store

    findings = validate_store(args.path, read_chunks=not args.quick)
    errors = [f for f in findings if f.severity == "error"]
    for f in findings:
        print(f"{args.path}: {f.severity}: {f.message}")
    if errors:
        if args.repair:
            print(
                f"{args.path}: repair not attempted: --repair drops only an uncommitted tail past a verified "
                "commit record and fixes none of the errors above; nothing was changed"
            )
        return 1
    if args.repair:
        for line in repair_store(args.path, findings):
            print(f"repaired: {line}")
        findings = validate_store(args.path, read_chunks=not args.quick)
        errors = [f for f in findings if f.severity == "error"]
        if errors:  # cannot happen after a sound validation, unless another process damaged it meanwhile
            for f in errors:
                print(f"{args.path}: {f.severity}: {f.message}")
            return 1
    print(f"{args.path}: ok")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from robostack.data.merge import merge_stores

    n, notes = merge_stores(args.inputs, args.out, keys=args.keys)
    for line in notes:
        print(f"merge: {line}")
    print(f"merged {n} episodes from {len(args.inputs)} store(s) into {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if args.fmt == "robomimic":
        from robostack.data.robomimic_io import import_robomimic

        n = import_robomimic(args.src, args.dst)
    elif args.fmt == "lerobot":
        from robostack.data.lerobot_io import import_lerobot

        n, _ = import_lerobot(args.src, args.dst, args.repo_id)
    elif args.fmt == "rosbag2":
        from robostack.ros.bag_io import import_rosbag

        if not args.topic_map:
            raise RobostackError("--from rosbag2 needs --topic-map MAP.yaml (the policy node's)")
        r = import_rosbag(args.src, args.dst, args.topic_map, args.rate, args.episodes_from, args.max_age,
                          task=args.task)  # fmt: skip
        ages = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in r.max_age_s.items())
        print(
            f"resampled {r.steps} steps at {args.rate:g} Hz; oldest input per key: {ages}"
            + (f"; dropped {r.dropped} steps older than {args.max_age} s" if args.max_age is not None else "")
        )
        n = r.episodes
    else:
        from robostack.data.diffusion_policy_io import import_diffusion_policy

        n = import_diffusion_policy(args.src, args.dst, control_rate_hz=args.control_rate)
    print(f"imported {n} episodes from {args.src} ({args.fmt}) into {args.dst}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.fmt == "robomimic":
        from robostack.data.robomimic_io import export_robomimic

        n = export_robomimic(args.src, args.dst)
    elif args.fmt == "lerobot":
        from robostack.data.lerobot_io import export_lerobot

        n = export_lerobot(args.src, args.dst, args.repo_id)
    elif args.fmt == "rosbag2":
        from robostack.ros.bag_io import export_rosbag

        if not args.topic_map:
            raise RobostackError("--to rosbag2 needs --topic-map MAP.yaml")
        n = export_rosbag(args.src, args.dst, args.topic_map)
    else:
        from robostack.data.diffusion_policy_io import export_diffusion_policy

        n = export_diffusion_policy(args.src, args.dst)
    print(f"exported {n} episodes from {args.src} to {args.dst} ({args.fmt})")
    return 0
