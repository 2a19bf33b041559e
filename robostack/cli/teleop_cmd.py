"""``robostack teleop``: the operator's tool -- watch a policy, take over, hand back; every episode recorded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from robostack.errors import RobostackError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "teleop",
        help="operator tool: watch a policy act in simulation, take over with a device, record both actions",
    )
    p.add_argument("--task", required=True)
    p.add_argument(
        "--policy", default=None, help="run, policy folder or .onnx (omit: teleoperated demonstrations)"
    )
    p.add_argument("--device", required=True, help="keyboard | gamepad | spacemouse | script:FILE")
    p.add_argument("--out", default=None, help="store to create, or to append to (simulation)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to commit")
    p.add_argument(
        "--seed", type=int, default=None, help="first episode seed (default: after the store's largest)"
    )
    p.add_argument(
        "--mapping", default=None, help="mapping YAML (default configs/teleop/<task>_<device>.yaml)"
    )
    p.add_argument(
        "--takeover", default="hold", choices=["hold", "toggle"], help="hold: dead-man switch (default)"
    )
    p.add_argument("--show", action="store_true", help="open the window for a script device too")
    p.add_argument("--realtime", action="store_true", help="pace a script device at the control rate")
    p.add_argument("--view-size", type=int, default=256, help="rendered view, pixels")
    p.add_argument(
        "--auto-next", action="store_true", help="start the next episode at once (no wait for 'next')"
    )
    p.add_argument("--timeline", default=None, help="timeline PNG (default: <out>.timeline.png)")
    p.add_argument("--log", default=None, help="write the session's per-episode log (JSON)")
    p.add_argument("--screenshot", default=None, help="save the window to this PNG when the session ends")
    p.add_argument("--fsync", action="store_true", help="fsync before every commit (power-loss safe)")
    r = p.add_argument_group("on a robot (--ros): record.launch.xml runs there; this window drives it")
    r.add_argument(
        "--ros", action="store_true", help="operate a robot through ROS 2 instead of the simulator"
    )
    r.add_argument(
        "--camera-topic", action="append", default=None, help="sensor_msgs/Image topic to show (repeat)"
    )
    r.add_argument(
        "--robot-mapping",
        default=None,
        help="the robot's gamepad mapping a keyboard emulates (default configs/teleop/<task>_gamepad.yaml)",
    )
    r.add_argument(
        "--recorder", default="/recorder_node", help="recorder node name (its ~/start, ~/stop, ~/discard)"
    )
    r.add_argument("--mux", default="/teleop_mux_node", help="teleop mux node name (its ~/is_intervention)")
    p.set_defaults(func=cmd_teleop)


def _teleop_ros(args: argparse.Namespace, mapping: Any, action_dim: int) -> int:
    from robostack.ros.teleop_remote import RemoteConfig, RemoteTeleop
    from robostack.teleop.devices import open_device
    from robostack.teleop.mapping import load_mapping
    from robostack.utils.table import format_table

    if args.policy or args.out:
        raise RobostackError(
            "with --ros the policy and the store are the robot's (record.launch.xml): drop --policy/--out"
        )
    robot = load_mapping(args.robot_mapping, args.task, "gamepad", action_dim)
    scripted = args.device.startswith("script:")
    cfg = RemoteConfig(
        task=args.task,
        device=args.device,
        episodes=args.episodes,
        camera_topics=args.camera_topic or ["/camera/image_raw"],
        takeover=args.takeover,
        window=not scripted or args.show,
        view_size=args.view_size,
        recorder=args.recorder,
        mux=args.mux,
    )
    device = open_device(args.device, mapping)
    window = None
    if cfg.window:
        from robostack.teleop.window import TeleopWindow

        window = TeleopWindow(
            cfg.view_size * len(cfg.camera_topics), cfg.view_size, f"robostack teleop: {args.task} (ROS)"
        )
    try:
        episodes = RemoteTeleop(cfg, mapping, robot, device, window).run()
    finally:
        if window is not None:
            if args.screenshot:
                window.save(args.screenshot)
            window.close()
    rows = [(str(e.index), str(e.steps), str(e.takeovers), e.message) for e in episodes]
    print(format_table(["episode", "steps", "takeovers", "recorder"], rows))
    return 0


def cmd_teleop(args: argparse.Namespace) -> int:
    from robostack.sim.registry import task_spec
    from robostack.teleop.devices import emulated_device, open_device
    from robostack.teleop.mapping import load_mapping
    from robostack.teleop.report import plot_timeline, summary_table
    from robostack.teleop.session import TeleopConfig, TeleopSession, session_json, session_rates

    spec = task_spec(args.task)
    scripted = args.device.startswith("script:")
    kind = emulated_device(args.device)
    mapping = load_mapping(args.mapping, args.task, kind, int(spec.action.shape[0]))
    if args.ros:
        return _teleop_ros(args, mapping, int(spec.action.shape[0]))
    if args.out is None:
        raise RobostackError("--out STORE is required (with --ros the robot's recorder writes the store)")
    cfg = TeleopConfig(
        task=args.task,
        device=args.device,
        out=args.out,
        policy=args.policy,
        episodes=args.episodes,
        seed=args.seed,
        mapping=mapping.path,
        takeover=args.takeover,
        realtime=not scripted or args.realtime,
        window=not scripted or args.show,
        view_size=args.view_size,
        wait_between_episodes=not scripted and not args.auto_next,
        fsync=args.fsync,
    )
    device = open_device(args.device, mapping)  # first: a missing device is the more useful error
    window = None
    if cfg.window:
        from robostack.teleop.window import TeleopWindow

        window = TeleopWindow(cfg.view_size, cfg.view_size, f"robostack teleop: {args.task}")
    session = TeleopSession(cfg, mapping, device, window)
    try:
        logs = session.run()
    finally:
        if window is not None:
            if args.screenshot:
                window.save(args.screenshot)
            window.close()
    print(summary_table(logs, spec.control_rate_hz))
    if cfg.realtime and session.totals["control_steps"]:
        r = session_rates(session.totals)
        shown = f", display {r['display_fps']:.1f} fps" if window is not None else ""
        print(f"control {r['control_hz']:.1f} Hz (task rate {spec.control_rate_hz:g} Hz){shown}")
    timeline = args.timeline or str(Path(args.out).with_suffix("")) + ".timeline.png"
    plot_timeline(logs, spec.control_rate_hz, timeline, policy=args.policy is not None)
    print(f"timeline: {timeline}")
    if args.log:
        Path(args.log).write_text(json.dumps(session_json(cfg, logs, session.totals), indent=1))
    return 0
