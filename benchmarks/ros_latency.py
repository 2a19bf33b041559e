"""policy_node timing over real DDS: timer period error and observation-to-command latency (inference excluded) at
10, 50 and 100 Hz, and how fast the watchdog and the e-stop stop the commands. Writes
benchmarks/results/ros_latency.md/json.

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
        self.cmds: list[float] = []
        self.status: list[dict] = []
        self.send = True
        self.last_sent = 0.0
        self.node.create_subscription(
            Float64MultiArray, "/b/commands", lambda m: self.cmds.append(time.monotonic()), 50
        )
        self.node.create_subscription(
            String, "/policy_node/status", lambda m: self.status.append(json.loads(m.data)), 10
        )
        self.node.create_timer(1.0 / rate, self._pub)
        self.ex = rclpy.executors.SingleThreadedExecutor()
        self.ex.add_node(self.node)

    def _pub(self) -> None:
        if self.send:
            self.js.publish(JointState(name=["x", "y"], position=[0.1, 0.2], velocity=[0.0, 0.0]))
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
        b.spin(seconds)
        assert b.wait(lambda: bool(b.status), 3)
        st = b.status[-1]
        # watchdog: stop publishing -> time from the last observation to the last command
        b.send = False
        b.spin(MAX_AGE + 0.5)
        watchdog_s = max(b.cmds) - b.last_sent
        b.send = True
        assert b.wait(lambda: b.cmds[-1] > b.last_sent, 5)
        b.spin(0.5)
        # e-stop: time from the e-stop message to the last command
        t = time.monotonic()
        b.estop.publish(Bool(data=True))
        b.spin(0.5)
        estop_s = max(b.cmds) - t
    finally:
        b.node.destroy_node()
        rclpy.shutdown()
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "rate_hz": rate, "achieved_hz": st["rate_hz"], "period_error_ms": st["period_error_ms_p50_p99"],
        "obs_to_command_ms": st["obs_to_command_ms_p50_p99"], "inference_ms": st["inference_ms_p50_p99"],
        "watchdog_stop_after_last_obs_s": round(watchdog_s, 4), "watchdog_limit_s": MAX_AGE + 1.0 / rate,
        "estop_last_command_after_s": round(estop_s, 4), "period_s": 1.0 / rate,
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
                     "/".join(map(str, r["obs_to_command_ms"])), f"{1e3 * r['watchdog_stop_after_last_obs_s']:.0f}"
                     f" (limit {1e3 * r['watchdog_limit_s']:.0f})", f"{1e3 * r['estop_last_command_after_s']:.1f}"
                     f" (period {1e3 * r['period_s']:.0f})"))  # fmt: skip
        print(rows[-1], flush=True)
    headers = ["rate Hz", "achieved Hz", "period error ms p50/p99", "obs-to-command ms p50/p99 (no inference)",
               "watchdog: last command after last obs, ms", "e-stop: last command after e-stop, ms"]  # fmt: skip
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
