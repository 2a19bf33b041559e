"""policy_node with real rclpy over FastDDS: the node runs as its own process; this test talks to it over topics.

Closed loop on published observations; every safety reaction *holds*, and on the default velocity interface a
hold is zeros published every period (a forward command controller keeps applying the last command it got):
the stale-observation watchdog (by arrival and by header stamp), the latched e-stop and its reset service, a
NaN-producing model; a spec mismatch refuses the configure transition itself; configure -> cleanup -> configure
leaves one publisher and one subscription per topic; latency measured from the observation's stamp to the
command's arrival here, at an independent subscriber.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from ros_harness import RATE, TOPIC_MAP, Harness, _stop, make_models, start_node

PERIOD = 1.0 / RATE
MAX_AGE = 0.3  # start_node's max_obs_age_s


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


def _zero(cmd) -> bool:
    return all(x == 0.0 for x in cmd)


def _first_zero_after(ros, t0: float) -> float | None:
    return next((t for t, c in ros.cmds if t > t0 and _zero(c)), None)


def _call(ros, client, request, timeout=10):
    assert client.wait_for_service(timeout_sec=timeout)
    fut = client.call_async(request)
    assert ros.wait_for(fut.done, timeout)
    return fut.result()


def test_closed_loop_hold_on_stale_data_and_estop(ros, model):
    proc = start_node(model / "model.onnx", model / "map.yaml")
    try:
        assert ros.wait_for(lambda: len(ros.cmds) >= 20, 60), "no commands from policy_node"
        acts = np.array([c for _, c in ros.cmds])
        assert acts.shape[1] == 2 and np.isfinite(acts).all() and np.abs(acts).max() <= 1.0
        assert not _zero(ros.cmds[-1][1]), "the test model must command something non-zero"
        # watchdog (unstamped topic, aged by arrival): zeros within max_obs_age + one period of the last message,
        # and zeros every period while it lasts -- never silence, never the last command
        ros.send["object"] = False
        ros.spin(0.05)
        t_last = ros.sent["object"]
        ros.spin(1.0)
        t_zero = _first_zero_after(ros, t_last)
        assert t_zero is not None and t_zero - t_last <= MAX_AGE + 2 * PERIOD, "no hold on stale data"
        held = [c for t, c in ros.cmds if t > t_zero]
        assert len(held) >= int(0.5 * RATE) and all(_zero(c) for c in held), "the hold must repeat zeros"
        n = len(ros.cmds)
        ros.send["object"] = True
        assert ros.wait_for(lambda: any(not _zero(c) for _, c in ros.cmds[n:]), 5), "did not resume"
        # e-stop: latched, zeros within one period, survives a 'false', cleared only by ~/reset
        ros.estop.publish(Bool(data=True))
        t_estop = time.monotonic()
        ros.spin(0.8)
        t_zero = _first_zero_after(ros, t_estop)
        assert t_zero is not None and t_zero - t_estop <= PERIOD, "e-stop did not hold within one period"
        assert all(_zero(c) for t, c in ros.cmds if t >= t_zero)
        ros.estop.publish(Bool(data=False))
        n = len(ros.cmds)
        ros.spin(0.5)
        assert len(ros.cmds) > n and all(_zero(c) for _, c in ros.cmds[n:]), "e-stop must stay latched"
        assert _call(ros, ros.reset, Trigger.Request()).success
        n = len(ros.cmds)
        assert ros.wait_for(lambda: any(not _zero(c) for _, c in ros.cmds[n:]), 5), "no resume after ~/reset"
        ros.status.clear()
        assert ros.wait_for(lambda: bool(ros.status), 3)
        status = json.loads(ros.status[-1])
        assert status["estop"] is False and status["hold"] == "zero" and status["hold_commands"] > 0
        assert (
            len(status["obs_to_command_ms_p50_p99"]) == 2 and len(status["tick_to_command_ms_p50_p99"]) == 2
        )
    finally:
        log = _stop(proc)
    assert "watchdog: no fresh data on obs/object" in log and "E-STOP engaged" in log, log
    # each stale spell is logged once when it starts and once when it clears, never every period (a loaded machine
    # may add a short spell of its own, so count spells rather than expect exactly one)
    stops, resumes = log.count("watchdog: no fresh data"), log.count("all observations fresh again")
    assert 1 <= stops <= resumes + 1 and stops <= 3, log


def test_republished_old_stamp_trips_the_watchdog(ros, model):
    """A driver that keeps publishing the same old JointState looks alive by arrival; its stamp gives it away."""
    proc = start_node(model / "model.onnx", model / "map.yaml")
    try:
        assert ros.wait_for(lambda: len(ros.cmds) >= 10 and not _zero(ros.cmds[-1][1]), 60)
        ros.fixed_stamp = (
            ros.node.get_clock().now().to_msg()
        )  # from now on every JointState carries this stamp
        t_frozen = time.monotonic()
        ros.spin(1.0)
        t_zero = _first_zero_after(ros, t_frozen)
        assert (
            t_zero is not None and t_zero - t_frozen <= MAX_AGE + 0.05 + 2 * PERIOD
        )  # + clock-skew allowance
        assert all(_zero(c) for t, c in ros.cmds if t > t_zero + PERIOD)
        # a stamp from the future (beyond the skew tolerance) is refused too
        ros.fixed_stamp = Time(sec=int(ros.now()) + 60)
        ros.spin(0.5)
        assert all(_zero(c) for t, c in ros.cmds[-5:])
        ros.fixed_stamp = None
        n = len(ros.cmds)
        assert ros.wait_for(lambda: any(not _zero(c) for _, c in ros.cmds[n:]), 5), "fresh stamps: no resume"
    finally:
        log = _stop(proc)
    assert "watchdog: no fresh data on obs/state" in log, log


def test_nan_model_holds_with_zeros(ros, model):
    proc = start_node(model / "nan.onnx", model / "map.yaml")
    try:
        assert ros.wait_for_state("active")
        ros.spin(2.0)
    finally:
        log = _stop(proc)
    assert len(ros.cmds) >= RATE, "a hold is a command published every period"
    assert all(_zero(c) for _, c in ros.cmds), "a NaN-producing model must only ever produce the hold (zeros)"
    assert "policy output holds NaN/Inf: holding" in log, log


def test_position_interface_holds_the_last_position(ros, model, tmp_path):
    pos_map = tmp_path / "pos.yaml"
    pos_map.write_text(TOPIC_MAP.replace("topic: /t/commands}", "topic: /t/commands, interface: position}"))
    proc = start_node(model / "model.onnx", pos_map)
    try:
        assert ros.wait_for(lambda: len(ros.cmds) >= 10, 60)
        ros.send["object"] = False
        ros.spin(0.05)
        t_last = ros.sent["object"]
        ros.spin(1.0)
        # the hold repeats the last position the policy commanded while its data was fresh, every period
        held = ros.cmds[-1][1]
        i = len(ros.cmds) - 1
        while i > 0 and ros.cmds[i - 1][1] == held:
            i -= 1
        assert not _zero(held) and len(ros.cmds) - i >= 10, "position hold repeats the last command"
        assert (
            ros.cmds[i][0] <= t_last + MAX_AGE + PERIOD
        ), "the held value must be one computed on fresh data"
    finally:
        _stop(proc)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOPIC_MAP.replace("topic: /t/commands}", "topic: /t/commands, interface: position}"))
    proc = start_node(model / "model.onnx", bad, "-p", "hold:=zero")
    try:
        assert ros.wait_for_state("inactive")
    finally:
        log = _stop(proc)
    assert "hold 'zero' on a position interface would drive every joint to 0" in log, log


def _lifecycle(ros):
    change = ros.node.create_client(ChangeState, "/policy_node/change_state")
    get = ros.node.create_client(GetState, "/policy_node/get_state")

    def transition(tid):
        return _call(ros, change, ChangeState.Request(transition=Transition(id=tid))).success

    def state():
        return _call(ros, get, GetState.Request()).current_state.label

    return transition, state


def test_spec_mismatch_refuses_the_configure_transition(ros, model, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOPIC_MAP.replace("fields: [position, velocity]", "fields: [position]"))
    proc = start_node(model / "model.onnx", bad, "-p", "autostart:=false")
    try:
        transition, state = _lifecycle(ros)
        assert state() == "unconfigured"
        assert transition(Transition.TRANSITION_CONFIGURE) is False, "configure must be refused"
        assert state() == "unconfigured"
        ros.spin(1.0)
        assert ros.cmds == []
    finally:
        log = _stop(proc)
    assert "configure failed: model spec does not match the topic map: 'obs/state' needs 4 values" in log, log


def test_configure_cleanup_configure_leaks_nothing(ros, model):
    proc = start_node(model / "model.onnx", model / "map.yaml", "-p", "autostart:=false")
    try:
        transition, state = _lifecycle(ros)
        for _ in range(2):
            assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive"
            ros.spin(0.5)  # let discovery settle
            assert ros.node.count_publishers("/t/commands") == 1
            assert ros.node.count_subscribers("/t/joint_states") == 1
            assert transition(Transition.TRANSITION_CLEANUP) and state() == "unconfigured"
            assert ros.wait_for(lambda: ros.node.count_publishers("/t/commands") == 0, 5)
        assert transition(Transition.TRANSITION_CONFIGURE) and transition(Transition.TRANSITION_ACTIVATE)
        assert ros.wait_for(lambda: len(ros.cmds) >= 10, 10), "no commands after re-configuring"
        assert ros.node.count_publishers("/t/commands") == 1
        n = len(ros.cmds)
        assert transition(Transition.TRANSITION_DEACTIVATE)
        ros.spin(0.5)
        assert ros.cmds[n:] and _zero(ros.cmds[-1][1]), "deactivating must leave the robot held"
    finally:
        _stop(proc)


def test_latency_from_observation_stamp_to_command_arrival(ros, model):
    """Measured where a controller would be: from the stamp of the observation a command was computed from (the
    policy's ~/decision names it) to the command's arrival at this independent subscriber. Speed is not asserted
    (benchmarks/ros_latency.py measures it); what holds on any machine: every command pairs with its decision,
    and none was computed from data older than the watchdog allows."""
    proc = start_node(model / "model.onnx", model / "map.yaml")
    try:
        assert ros.wait_for(lambda: len(ros.decisions) >= 60 and len(ros.cmds) >= 60, 60)
    finally:
        _stop(proc)
    by_action: dict[tuple, list[float]] = {}
    for (_, c), t_ros in zip(ros.cmds, ros.cmd_ros_times, strict=True):
        by_action.setdefault(tuple(c), []).append(t_ros)
    latencies = []
    for _, d in ros.decisions:
        assert set(d["obs"]) == {"obs/state", "obs/object"} and set(d["obs_stamps"]) == set(d["obs"])
        assert d["stamp"] == d["obs_stamps"]["obs/state"], "the stamp is the stamped topic's header stamp"
        arrived = by_action.get(tuple(d["action"]))
        assert arrived, f"decision {d['seq']} has no command with its action"
        latencies.append(arrived.pop(0) - d["stamp"])
    lat = np.array(latencies)
    assert (lat > 0).all() and lat.max() <= MAX_AGE + 0.05, lat


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
    assert res["episodes"] == 2 and [e["seed"] for e in res["per_episode"]] == [200_000, 200_001]
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
