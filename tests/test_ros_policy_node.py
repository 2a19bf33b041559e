"""policy_node with real rclpy over FastDDS: the node runs as its own process; this test talks to it over topics.

Closed loop on published observations, the stale-observation watchdog (stop, then resume), the latched e-stop and
its reset service, a NaN-producing model (hold, never a NaN command) and a spec mismatch (refuses to activate).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

rclpy = pytest.importorskip("rclpy")

from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from robostack.data.normalize import KeyStats  # noqa: E402
from robostack.data.schema import FeatureSpec  # noqa: E402
from robostack.export import ExportConfig, export_policy  # noqa: E402
from robostack.policies import PolicySpec, build_policy, save_policy  # noqa: E402

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


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    base = tmp_path_factory.mktemp("rosmodel")
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

    def __init__(self):
        self.node = rclpy.create_node("harness")
        self.js = self.node.create_publisher(JointState, "/t/joint_states", 10)
        self.obj = self.node.create_publisher(Float32MultiArray, "/t/object", 10)
        self.estop = self.node.create_publisher(Bool, "/policy_node/estop", 10)
        self.reset = self.node.create_client(Trigger, "/policy_node/reset")
        self.cmds: list[tuple[float, list[float]]] = []
        self.status: list[str] = []
        self.node.create_subscription(Float64MultiArray, "/t/commands", self._on_cmd, 10)
        self.node.create_subscription(String, "/policy_node/status", lambda m: self.status.append(m.data), 10)
        self.send = {"state": True, "object": True}
        self.node.create_timer(1.0 / RATE, self._publish)
        self.exec = rclpy.executors.SingleThreadedExecutor()
        self.exec.add_node(self.node)

    def _on_cmd(self, msg):
        self.cmds.append((time.monotonic(), list(msg.data)))

    def _publish(self):
        if self.send["state"]:
            # joints deliberately listed in another order than the topic map: mapping is by name
            self.js.publish(JointState(name=["other", "slide_y", "slide_x"], position=[9.0, 0.2, 0.1],
                                       velocity=[9.0, 0.0, 0.0]))  # fmt: skip
        if self.send["object"]:
            self.obj.publish(Float32MultiArray(data=[0.3, 0.1, 1.0, 0.0, 0.5, 0.5]))

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


@pytest.fixture
def ros():
    rclpy.init()
    h = Harness()
    yield h
    h.node.destroy_node()
    rclpy.shutdown()


def _stop(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_closed_loop_watchdog_and_estop(ros, model):
    proc = start_node(model / "model.onnx", model / "map.yaml")
    try:
        assert ros.wait_for(lambda: len(ros.cmds) >= 20, 60), "no commands from policy_node"
        acts = np.array([c for _, c in ros.cmds])
        assert acts.shape[1] == 2 and np.isfinite(acts).all() and np.abs(acts).max() <= 1.0
        # watchdog: stop one topic -> commands stop within max_obs_age + one period; resume on fresh data
        ros.send["object"] = False
        t_stop = time.monotonic()
        ros.spin(1.0)
        last = max(t for t, _ in ros.cmds)
        assert (
            last - t_stop <= 0.3 + 2 / RATE
        ), f"commands continued {last - t_stop:.3f} s after the topic stopped"
        n = len(ros.cmds)
        ros.send["object"] = True
        assert ros.wait_for(lambda: len(ros.cmds) > n + 5, 5), "did not resume after fresh data"
        # e-stop: latched, stops within one period, survives a 'false', cleared only by ~/reset
        ros.estop.publish(Bool(data=True))
        t_estop = time.monotonic()
        ros.spin(0.8)
        after = [t for t, _ in ros.cmds if t > t_estop]
        assert not after or max(after) - t_estop <= 2 / RATE
        ros.estop.publish(Bool(data=False))
        n = len(ros.cmds)
        ros.spin(0.5)
        assert len(ros.cmds) == n, "e-stop must stay latched"
        assert ros.reset.wait_for_service(timeout_sec=5)
        fut = ros.reset.call_async(Trigger.Request())
        assert ros.wait_for(fut.done, 5) and fut.result().success
        assert ros.wait_for(lambda: len(ros.cmds) > n + 5, 5), "did not resume after ~/reset"
        ros.status.clear()
        assert ros.wait_for(lambda: bool(ros.status), 3)
        assert '"estop": false' in ros.status[-1] and "inference_ms_p50_p99" in ros.status[-1]
    finally:
        log = _stop(proc)
    assert "watchdog: no fresh data on obs/object" in log and "E-STOP engaged" in log, log
    assert log.count("watchdog: no fresh data") == 1  # logged once, not every period


def test_nan_model_holds(ros, model):
    proc = start_node(model / "nan.onnx", model / "map.yaml")
    try:
        assert ros.wait_for_state("active")
        ros.spin(2.0)
        assert ros.cmds == [], "a NaN-producing model must never produce a command"
    finally:
        log = _stop(proc)
    assert "policy output holds NaN/Inf: holding" in log, log


def test_spec_mismatch_refuses_to_activate(ros, model, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOPIC_MAP.replace("fields: [position, velocity]", "fields: [position]"))
    proc = start_node(model / "model.onnx", bad)
    try:
        assert ros.wait_for_state("inactive")
        ros.spin(2.0)
        assert ros.cmds == []
    finally:
        log = _stop(proc)
    assert "configure failed: model spec does not match the topic map: 'obs/state' needs 4 values" in log, log


def test_sim_launch_closed_loop(ros, model):
    """sim.launch.xml as declared (sim robot + policy node), read and started as separate processes."""
    from launch_reader import PKG_SHARE, read_launch, start

    nodes = read_launch(
        PKG_SHARE["robostack_ros"] / "launch" / "sim.launch.xml",
        {"model": str(model / "push_like.onnx"), "episodes": "2", "seed": "7"},
    )
    assert [n.name for n in nodes] == ["sim_robot_node", "policy_node"]
    episodes, joints = [], []
    ros.node.create_subscription(String, "/sim_robot_node/episode", lambda m: episodes.append(m.data), 10)
    ros.node.create_subscription(
        JointState, "/robot/joint_states", lambda m: joints.append(list(m.position)), 10
    )
    ros.send.update(state=False, object=False)  # the sim robot publishes the observations now
    procs = start(nodes)
    try:
        assert ros.wait_for(lambda: len(episodes) == 2, 90), "episodes did not complete"
    finally:
        logs = [_stop(p) for p in procs]
    reports = [json.loads(e) for e in episodes]
    assert [r["seed"] for r in reports] == [7, 8] and all(r["steps"] >= 1 for r in reports)
    assert np.ptp(np.array(joints), axis=0).max() > 1e-3, "the pusher never moved: commands were not applied"
    assert "configured" in logs[1] and "sim robot 'push'" in logs[0], logs
