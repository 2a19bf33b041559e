"""policy_node with real rclpy over FastDDS: the node runs as its own process; this test talks to it over topics.

Closed loop on published observations, the stale-observation watchdog (stop, then resume), the latched e-stop and
its reset service, a NaN-producing model (hold, never a NaN command) and a spec mismatch (refuses to activate).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ros_harness import RATE, TOPIC_MAP, Harness, _stop, make_models, start_node  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("rosmodel"))


@pytest.fixture
def ros():
    rclpy.init()
    h = Harness()
    yield h
    h.node.destroy_node()
    rclpy.shutdown()


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
    # each stale spell is logged once when it starts and once when it clears, never every period (a loaded machine
    # may add a short spell of its own, so count spells rather than expect exactly one)
    stops, resumes = log.count("watchdog: no fresh data"), log.count("all observations fresh again")
    assert 1 <= stops <= resumes + 1 and stops <= 3, log


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


def test_eval_through_ros_cli(model):
    """`robostack eval --ros`: sim robot + policy node processes, episodes on the evaluator's seeds."""
    from conftest import assert_one_line_error, run_cli

    proc = run_cli(
        "eval", "--policy", model / "push_like.onnx", "--task", "push", "--episodes", "2", "--ros", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["episodes"] == 2 and [e["seed"] for e in res["per_episode"]] == [100_000, 100_001]
    assert (
        res["policy_status"]["commands"] > 0 and len(res["policy_status"]["obs_to_command_ms_p50_p99"]) == 2
    )
    assert_one_line_error(
        run_cli("eval", "--policy", model / "push_like.policy", "--task", "push", "--ros"), "exported model"
    )


def test_joint_trajectory_chunk_output(ros, model, tmp_path):
    """command type joint_trajectory: the planned chunk goes out with time_from_start one period apart."""
    from trajectory_msgs.msg import JointTrajectory

    traj_map = tmp_path / "traj.yaml"
    traj_map.write_text(
        TOPIC_MAP.replace(
            "command: {type: float64_array, topic: /t/commands}",
            "command: {type: joint_trajectory, topic: /t/trajectory, joints: [slide_x, slide_y]}",
        )
    )
    got = []
    ros.node.create_subscription(JointTrajectory, "/t/trajectory", got.append, 10)
    proc = start_node(model / "model.onnx", traj_map)
    try:
        assert ros.wait_for(lambda: len(got) >= 8, 60), "no trajectories"
    finally:
        _stop(proc)
    lengths = [len(m.points) for m in got]
    assert (
        max(lengths) == 4 and min(lengths) >= 1
    )  # a whole 4-action chunk when it plans, its tail afterwards
    msg = next(m for m in got if len(m.points) == 4)
    assert list(msg.joint_names) == ["slide_x", "slide_y"]
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    np.testing.assert_allclose(times, [0.05, 0.10, 0.15, 0.20], atol=1e-6)
    pos = np.array([list(p.positions) for p in msg.points])
    assert pos.shape == (4, 2) and np.isfinite(pos).all() and np.abs(pos).max() <= 1.0
