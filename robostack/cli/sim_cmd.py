"""``robostack sim list|demos|replay|render``."""

from __future__ import annotations

import argparse
import json


def add(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="simulated tasks, scripted demonstrations, replay and rendering")
    ssub = sim.add_subparsers(dest="sim_command", required=True, parser_class=type(sim))

    p = ssub.add_parser("list", help="registered tasks with their specs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = ssub.add_parser("demos", help="generate scripted demonstrations into a store (appends if it exists)")
    p.add_argument("--task", required=True)
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument(
        "--quality",
        default="expert",
        help="expert | noisy | medium | random | dart | recovery | mixed | medium_mixed",
    )
    p.add_argument(
        "--dart-noise", type=float, default=None, help="executed noise std of --quality dart (default 0.3)"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="first seed (default: after the store's largest)")
    p.add_argument("--cameras", default="", help="comma-separated cameras to record (robosuite tasks)")
    p.add_argument("--image-size", type=int, default=84)
    p.add_argument("--fsync", action="store_true", help="fsync before every commit (power-loss safe)")
    p.set_defaults(func=cmd_demos)

    p = ssub.add_parser(
        "replay", help="re-execute an episode's actions and report the largest state deviation"
    )
    p.add_argument("path")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=1e-9, help="exit 1 when the deviation exceeds this")
    p.set_defaults(func=cmd_replay)

    p = ssub.add_parser("render", help="render an episode offscreen to a video")
    p.add_argument("path")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--camera", default=None)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.set_defaults(func=cmd_render)


def cmd_list(args: argparse.Namespace) -> int:
    from robostack.sim.registry import task_names, task_spec

    specs = [task_spec(n) for n in task_names()]
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=1))
        return 0
    for s in specs:
        print(f"{s.name:<6} {s.control_rate_hz:g} Hz, max {s.max_steps} steps  {s.description}")
        print(f"       robot:  {s.robot}")
        for k, v in s.obs.items():
            print(
                f"       obs/{k:<8} {v.dtype}{list(v.shape)}" + (f"  {', '.join(v.names)}" if v.names else "")
            )
        print(
            f"       action      {s.action.dtype}{list(s.action.shape)} in [-1, 1]  {', '.join(s.action.names or [])}"
        )
        if s.cameras:
            print(f"       cameras     {', '.join(s.cameras)} (optional, obs/image_<camera>)")
    return 0


def cmd_demos(args: argparse.Namespace) -> int:
    from robostack.errors import RobostackError
    from robostack.sim.demos import DemoConfig, generate_demos

    if args.dart_noise is not None and args.quality != "dart":
        raise RobostackError(f"--dart-noise only applies to --quality dart (got --quality {args.quality})")

    cfg = DemoConfig(
        task=args.task,
        episodes=args.episodes,
        quality=args.quality,
        **({} if args.dart_noise is None else {"dart_noise": args.dart_noise}),
        out=args.out,
        workers=args.workers,
        seed=args.seed,
        cameras=tuple(c for c in args.cameras.split(",") if c),
        image_size=args.image_size,
        fsync=args.fsync,
    )
    summary = generate_demos(cfg)
    print(summary.table())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from robostack.sim.playback import replay

    r = replay(args.path, args.episode)
    ok = r.max_state_deviation <= args.tolerance and r.replayed_success == r.recorded_success
    print(
        f"episode {r.episode} ({r.task}, {r.steps} steps): max state deviation {r.max_state_deviation:.3g}; "
        f"success recorded {r.recorded_success}, replayed {r.replayed_success} -> "
        + ("deterministic" if ok else "MISMATCH")
    )
    return 0 if ok else 1


def cmd_render(args: argparse.Namespace) -> int:
    from robostack.sim.playback import render

    n = render(args.path, args.episode, args.out, args.camera, args.width, args.height)
    print(f"wrote {n} frames to {args.out}")
    return 0
