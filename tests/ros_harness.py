"""Helpers for the ROS 2 tests: tiny exported models, starting nodes as processes, and a harness node that
publishes observations at the control rate and records what comes back. Imported only by tests that need rclpy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import rclpy
import rclpy.executors
import torch
from onnx import helper, numpy_helper
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray, String
from std_srvs.srv import Trigger

from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec
from robostack.export import ExportConfig, export_policy
from robostack.policies import PolicySpec, build_policy, save_policy

RATE = 20.0
SPEC = PolicySpec(
    obs={"obs/state": FeatureSpec("float32", (4,)), "obs/object": FeatureSpec("float32", (6,))},
    action=FeatureSpec("float32", (2,)),
    action_low=[-1.0, -1.0],
    action_high=[1.0, 1.0],
    control_rate_hz=RATE,
)
TOPIC_MAP = """
observations:
  obs/state: {topic: /t/joint_states, type: joint_state, joints: [slide_x, slide_y], fields: [position, velocity]}
  obs/object: {topic: /t/object, type: float32_array}
command: {type: float64_array, topic: /t/commands}
"""


def _ks(d):
    return KeyStats(min=-np.ones(d), max=np.ones(d), mean=np.zeros(d), std=np.ones(d), count=10)


def make_models(base):
    """model.onnx (Gaussian, push-shaped), nan.onnx (same, output times NaN), push_like.onnx, map.yaml."""
    torch.manual_seed(0)
    stats = {"obs/state": _ks(4), "obs/object": _ks(6), "action": _ks(2)}
    pol = build_policy("gaussian", {"hidden_dims": [32], "n_obs_steps": 2, "horizon": 4, "n_action_steps": 4},
                       SPEC, stats)  # fmt: skip
    save_policy(pol, base / "pol", stats)
    export_policy(ExportConfig(policy=str(base / "pol"), out=str(base / "model.onnx")))
    (base / "map.yaml").write_text(TOPIC_MAP)
    # the same model with its output multiplied by NaN
    m = onnx.load(str(base / "model.onnx"))
    out = m.graph.output[0].name
    for node in m.graph.node:
        node.output[:] = [o + "_raw" if o == out else o for o in node.output]
    m.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan_const"))
    m.graph.node.append(helper.make_node("Mul", [out + "_raw", "nan_const"], [out]))
    onnx.save(m, str(base / "nan.onnx"))
    export_policy(ExportConfig(policy=str(base / "pol"), out=str(base / "push_like.onnx")))
    return base


def start_node(model_path, map_path, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "robostack.ros.policy_node", "--ros-args", "-p", f"model:={model_path}",
           "-p", f"topic_map:={map_path}", "-p", "autostart:=true", "-p", "max_obs_age_s:=0.3", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


class Harness:
    """Publishes observations at 20 Hz and records every command with its arrival time."""

    def __init__(self, js_topic="/t/joint_states", obj_topic="/t/object", joint_names=("slide_x", "slide_y")):
        self.node = rclpy.create_node("harness")
        self.joint_names = list(joint_names)
        self.js = self.node.create_publisher(JointState, js_topic, 10)
        self.obj = self.node.create_publisher(Float32MultiArray, obj_topic, 10)
        self.estop = self.node.create_publisher(Bool, "/policy_node/estop", 10)
        self.reset = self.node.create_client(Trigger, "/policy_node/reset")
        self.cmds: list[tuple[float, list[float]]] = []
        self.cmd_ros_times: list[float] = []  # the same arrivals on the ROS clock, to compare with stamps
        self.decisions: list[tuple[float, dict]] = []
        self.status: list[str] = []
        self.node.create_subscription(Float64MultiArray, "/t/commands", self._on_cmd, 10)
        self.node.create_subscription(String, "/policy_node/status", lambda m: self.status.append(m.data), 10)
        self.node.create_subscription(
            String,
            "/policy_node/decision",
            lambda m: self.decisions.append((self.now(), json.loads(m.data))),
            10,
        )
        self.send = {"state": True, "object": True}
        self.fixed_stamp = None  # a JointState stamp to republish (a driver resending an old reading)
        self.sent: dict[str, float] = {}
        self.k = 0  # when each topic was last published (time.monotonic)
        self.node.create_timer(1.0 / RATE, self._publish)
        self.exec = rclpy.executors.SingleThreadedExecutor()
        self.exec.add_node(self.node)

    def now(self) -> float:
        """ROS time in seconds: the clock header stamps (and the policy node) use."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_cmd(self, msg):
        self.cmds.append((time.monotonic(), list(msg.data)))
        self.cmd_ros_times.append(self.now())

    def _publish(self):
        if self.send["state"]:
            # joints deliberately listed in another order than the topic map: mapping is by name
            x, y = self.joint_names
            msg = JointState(name=["other", y, x], position=[9.0, 0.2, 0.1], velocity=[9.0, 0.0, 0.0])
            msg.header.stamp = self.fixed_stamp or self.node.get_clock().now().to_msg()
            self.js.publish(msg)
            self.sent["state"] = time.monotonic()
        if self.send["object"]:
            self.k += 1  # the object drifts a little, so the policy's commands differ from message to message
            self.obj.publish(Float32MultiArray(data=[0.3 + 1e-3 * (self.k % 200), 0.1, 1.0, 0.0, 0.5, 0.5]))
            self.sent["object"] = time.monotonic()

    def spin(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.exec.spin_once(timeout_sec=0.01)

    def wait_for_state(self, state, timeout=60):
        """The node publishes its status once per second from start-up on."""
        return self.wait_for(lambda: any(f'"state": "{state}"' in s for s in self.status), timeout)

    def wait_for(self, pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            self.exec.spin_once(timeout_sec=0.01)
        return pred()


def _stop(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]
