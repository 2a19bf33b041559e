"""policy_node timing over real DDS at 10, 50 and 100 Hz, every latency labelled by what it includes:

- observation stamp -> command arrival: from the ``header.stamp`` of the joint state a command was computed from
  (the policy's ``~/decision`` names it) to that command's arrival at this independent subscriber: includes the
  transport in, the wait for the node's timer tick, inference, the guard and the transport out;
- tick -> publish: inside the node, from its timer tick to publishing (inference and the guard);
- watchdog: from the last observation published to the first hold command (zeros) received here;
- e-stop: from the e-stop message to the first hold command received here, and whether any non-zero command
  arrived after it.
Writes benchmarks/results/ros_latency.md/json.

    .venv/bin/python benchmarks/ros_latency.py [--seconds 20] [--out benchmarks/results]

The model is a small Gaussian MLP (inference ~0.1 ms), so the numbers are the node's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import rclpy.executors
import torch
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray, String

from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec
from robostack.export import ExportConfig, export_policy
from robostack.policies import PolicySpec, build_policy, save_policy
from robostack.utils.table import format_markdown, format_table

TOPIC_MAP = """
observations:
  obs/state: {topic: /b/joint_states, type: joint_state, joints: [x, y], fields: [position, velocity]}
  obs/object: {topic: /b/object, type: float32_array}
command: {type: float64_array, topic: /b/commands}
"""
MAX_AGE = 0.1


def make_model(work: Path) -> Path:
    spec = PolicySpec(
        obs={"obs/state": FeatureSpec("float32", (4,)), "obs/object": FeatureSpec("float32", (6,))},
        action=FeatureSpec("float32", (2,)), action_low=[-1.0, -1.0], action_high=[1.0, 1.0], control_rate_hz=50.0,
    )  # fmt: skip
    ks = lambda d: KeyStats(min=-np.ones(d), max=np.ones(d), mean=np.zeros(d), std=np.ones(d), count=1)  # noqa: E731
    stats = {"obs/state": ks(4), "obs/object": ks(6), "action": ks(2)}
    torch.manual_seed(0)
    pol = build_policy("gaussian", {"hidden_dims": [64, 64], "n_obs_steps": 2, "horizon": 4, "n_action_steps": 4},
                       spec, stats)  # fmt: skip
    save_policy(pol, work / "pol", stats)
    export_policy(ExportConfig(policy=str(work / "pol"), out=str(work / "model.onnx")))
    (work / "map.yaml").write_text(TOPIC_MAP)
    return work / "model.onnx"


class Bench:
    def __init__(self, rate: float) -> None:
        self.node = rclpy.create_node("bench")
        self.js = self.node.create_publisher(JointState, "/b/joint_states", 10)
        self.obj = self.node.create_publisher(Float32MultiArray, "/b/object", 10)
        self.estop = self.node.create_publisher(Bool, "/policy_node/estop", 10)
        self.cmds: list[tuple[float, float, list[float]]] = []  # (monotonic, ROS time, command)
        self.decisions: list[dict] = []
        self.status: list[dict] = []
        self.send = True
        self.last_sent = 0.0
        self.k = 0
        self.node.create_subscription(Float64MultiArray, "/b/commands", self._on_cmd, 50)
        self.node.create_subscription(
            String, "/policy_node/decision", lambda m: self.decisions.append(json.loads(m.data)), 50
        )
        self.node.create_subscription(
            String, "/policy_node/status", lambda m: self.status.append(json.loads(m.data)), 10
        )
        self.node.create_timer(1.0 / rate, self._pub)
        self.ex = rclpy.executors.SingleThreadedExecutor()
        self.ex.add_node(self.node)

    def _on_cmd(self, m: Float64MultiArray) -> None:
        self.cmds.append((time.monotonic(), self.node.get_clock().now().nanoseconds * 1e-9, list(m.data)))

    def _pub(self) -> None:
        if self.send:
            self.k += 1  # observations change every message, so every command is told apart by its value
            js = JointState(name=["x", "y"], position=[0.1 + 1e-4 * self.k, 0.2], velocity=[0.0, 0.0])
            js.header.stamp = self.node.get_clock().now().to_msg()
            self.js.publish(js)
            self.obj.publish(Float32MultiArray(data=[0.0] * 6))
            self.last_sent = time.monotonic()

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.005)

    def wait(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            self.ex.spin_once(timeout_sec=0.005)
        return pred()

    def first_hold_after(self, t: float) -> float:
        return next(m for m, _, c in self.cmds if m > t and not any(c)) - t


def stamp_to_arrival_ms(cmds: list[tuple[float, float, list[float]]], decisions: list[dict]) -> list[float]:
    """Pairs each decision with the command carrying its action (arrival order), and returns arrival - stamp."""
    pending: dict[tuple, list[float]] = {}
    for _, t_ros, c in cmds:
        pending.setdefault(tuple(c), []).append(t_ros)
    out = []
    for d in decisions:
        arrivals = pending.get(tuple(d["action"]))
        if arrivals:
            out.append(1e3 * (arrivals.pop(0) - d["stamp"]))
    return out


def run_rate(model: Path, work: Path, rate: float, seconds: float, domain: int) -> dict:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "robostack.ros.policy_node", "--ros-args", "-p", f"model:={model}",
           "-p", f"topic_map:={work / 'map.yaml'}", "-p", "autostart:=true", "-p", f"rate_hz:={rate}",
           "-p", f"max_obs_age_s:={MAX_AGE}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    rclpy.init(domain_id=domain)
    b = Bench(rate)
    try:
        assert b.wait(lambda: len(b.cmds) > 20, 60), "no commands"
        b.status.clear()
        b.cmds.clear()
        b.decisions.clear()
        b.spin(seconds)
        lat = stamp_to_arrival_ms(list(b.cmds), list(b.decisions))
        assert b.wait(lambda: bool(b.status), 3)
        st = b.status[-1]
        # watchdog: stop publishing -> time from the last observation to the first hold command
        b.send = False
        b.spin(MAX_AGE + 0.5)
        watchdog_s = b.first_hold_after(b.last_sent)
        b.send = True
        assert b.wait(lambda: any(b.cmds[-1][2]), 5)
        b.spin(0.5)
        # e-stop: time from the e-stop message to the first hold command; nothing non-zero after it
        t = time.monotonic()
        b.estop.publish(Bool(data=True))
        b.spin(0.5)
        estop_s = b.first_hold_after(t)
        moved_after = sum(1 for m, _, c in b.cmds if m > t + estop_s and any(c))
    finally:
        b.node.destroy_node()
        rclpy.shutdown()
        proc.terminate()
        proc.wait(timeout=10)
    p50, p99 = (round(float(np.percentile(lat, q)), 3) for q in (50, 99))
    return {
        "rate_hz": rate, "achieved_hz": st["rate_hz"], "period_error_ms": st["period_error_ms_p50_p99"],
        "stamp_to_arrival_ms": [p50, p99], "pairs": len(lat), "tick_to_command_ms": st["tick_to_command_ms_p50_p99"],
        "inference_ms": st["inference_ms_p50_p99"],
        "watchdog_first_hold_after_last_obs_s": round(watchdog_s, 4), "watchdog_limit_s": MAX_AGE + 1.0 / rate,
        "estop_first_hold_after_s": round(estop_s, 4), "nonzero_commands_after_estop": moved_after,
        "period_s": 1.0 / rate,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ros-latency-"))
    model = make_model(work)
    rows, results = [], []
    for rate in (10.0, 50.0, 100.0):
        r = run_rate(model, work, rate, args.seconds, random.randint(1, 200))
        results.append(r)
        rows.append((f"{rate:g}", f"{r['achieved_hz']}", "/".join(map(str, r["period_error_ms"])),
                     "/".join(map(str, r["stamp_to_arrival_ms"])), "/".join(map(str, r["tick_to_command_ms"])),
                     f"{1e3 * r['watchdog_first_hold_after_last_obs_s']:.0f} (limit {1e3 * r['watchdog_limit_s']:.0f})",
                     f"{1e3 * r['estop_first_hold_after_s']:.1f} (period {1e3 * r['period_s']:.0f}); "
                     f"{r['nonzero_commands_after_estop']} non-zero after"))  # fmt: skip
        print(rows[-1], flush=True)
    headers = ["rate Hz", "achieved Hz", "period error ms p50/p99",
               "obs stamp -> command arrival ms p50/p99 (tick wait + inference + transport)",
               "tick -> publish ms p50/p99 (inference + guard)", "watchdog: first hold after last obs, ms",
               "e-stop: first hold after e-stop, ms"]  # fmt: skip
    print(format_table(headers, rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ros_latency.json").write_text(json.dumps(results, indent=1))
    (out / "ros_latency.md").write_text(
        f"# policy_node timing ({time.strftime('%Y-%m-%d')}, {args.seconds:g} s per rate, FastDDS, one machine)\n\n"
        + format_markdown(headers, rows) + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()
