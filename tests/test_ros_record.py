"""record.launch.xml (policy + teleop mux + recorder) with real rclpy: takeover switching, both actions recorded,
and a recorder killed with SIGKILL mid-episode leaves every committed episode intact."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from conftest import run_cli

rclpy = pytest.importorskip("rclpy")

from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from robostack.data import EpisodeStore  # noqa: E402

from ros_harness import RATE, Harness, _stop, make_models  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("recmodel"))


@pytest.fixture
def ros():
    rclpy.init()
    h = Harness(
        js_topic="/robot/joint_states", obj_topic="/robot/object", joint_names=["pusher_x", "pusher_y"]
    )
    yield h
    h.node.destroy_node()
    rclpy.shutdown()


def _call(ros, client, request, timeout=10):
    assert client.wait_for_service(timeout_sec=timeout)
    fut = client.call_async(request)
    assert ros.wait_for(fut.done, timeout)
    return fut.result()


def _start_episode(ros, client, attempts: int = 30):
    """The recorder refuses to start before it has heard every observation topic ("no messages yet"), which a
    freshly launched process may not have yet even when the policy node already drives the robot: ask until it
    accepts, and keep its last answer for the failure message."""
    assert client.wait_for_service(timeout_sec=30)
    res = None
    for _ in range(attempts):
        fut = client.call_async(Trigger.Request())
        if ros.wait_for(fut.done, 2):
            res = fut.result()
            if res.success:
                return res
        ros.spin(0.5)
    raise AssertionError(f"the recorder never started an episode: {res.message if res else 'no answer'}")


def test_takeover_recording_and_sigkill(ros, model, tmp_path):
    from launch_reader import PKG_SHARE, read_launch, start

    store = tmp_path / "rec.zarr"
    nodes = read_launch(
        PKG_SHARE["robostack_ros"] / "launch" / "record.launch.xml",
        {"store": str(store), "with_policy": "true", "model": str(model / "model.onnx")},
    )
    assert [n.name for n in nodes] == ["policy_node", "teleop_mux_node", "recorder_node"]
    human = ros.node.create_publisher(Float64MultiArray, "/teleop/commands", 10)
    takeover = ros.node.create_publisher(Bool, "/teleop/takeover", 10)
    executed: list[tuple[list[float], bool]] = []
    flags: list[bool] = []
    ros.node.create_subscription(
        Float64MultiArray,
        "/forward_velocity_controller/commands",
        lambda m: executed.append(list(m.data)),
        10,
    )
    ros.node.create_subscription(Bool, "/teleop_mux_node/is_intervention", lambda m: flags.append(m.data), 10)
    start_srv = ros.node.create_client(Trigger, "/recorder_node/start")
    stop_srv = ros.node.create_client(SetBool, "/recorder_node/stop")
    procs = start(nodes)
    try:
        assert ros.wait_for(lambda: len(executed) >= 10, 60), "the policy's commands never reached the robot"
        _start_episode(ros, start_srv)
        ros.spin(1.0)  # policy drives
        takeover.publish(Bool(data=True))
        for _ in range(int(RATE)):  # the human drives for a second
            human.publish(Float64MultiArray(data=[0.5, -0.5]))
            ros.spin(1.0 / RATE)
        takeover.publish(Bool(data=False))
        ros.spin(1.0)
        res = _call(ros, stop_srv, SetBool.Request(data=True))
        assert res.success and "committed" in res.message, res.message
        # second episode, then SIGKILL the recorder mid-episode
        _start_episode(ros, start_srv)
        ros.spin(1.5)
        procs[2].send_signal(signal.SIGKILL)
        procs[2].wait(timeout=10)
    finally:
        logs = [_stop(p) for p in procs]
    assert True in flags and False in flags
    assert "human takes over" in logs[1] and "policy back in control" in logs[1], logs[1]
    s = EpisodeStore(store)
    assert s.n_episodes == 1  # the killed episode was never committed
    ep = s.read_episode(0)
    flag = ep["is_intervention"].astype(bool)
    assert flag.any() and (~flag).any()
    np.testing.assert_allclose(ep["action"][flag][2:], [[0.5, -0.5]] * (flag.sum() - 2), atol=1e-6)
    assert np.abs(ep["human_action"][~flag]).max() == 0.0
    assert np.abs(ep["policy_action"]).max() > 0.0 and len(ep["timestamp"]) == len(flag)
    assert s.episodes()[0].success
    proc = run_cli("data", "validate", store)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
    # the store keeps recording after the crash: a fresh recorder appends (commands come from the harness now)
    cmd = ros.node.create_publisher(Float64MultiArray, "/forward_velocity_controller/commands", 10)
    ros.node.create_timer(1.0 / RATE, lambda: cmd.publish(Float64MultiArray(data=[0.1, 0.1])))
    procs = start([n for n in nodes if n.name == "recorder_node"])
    try:
        _start_episode(ros, start_srv)  # the new process needs a few seconds before its service answers
        ros.spin(0.5)
        assert _call(ros, stop_srv, SetBool.Request(data=False)).success
    finally:
        [_stop(p) for p in procs]
    assert EpisodeStore(store).n_episodes == 2
