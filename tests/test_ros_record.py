"""record.launch.xml (policy + teleop mux + recorder) with real rclpy: takeover switching, both actions recorded
(the recorded policy action is exactly what the policy published), the e-stop gating the human's commands during
a takeover, a recorder killed with SIGKILL mid-episode leaving every committed episode intact; and robot.launch.xml
driving the simulated robot while the recorder stores exactly aligned (observation, action) pairs."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger

from robostack.data import EpisodeStore

from conftest import run_cli
from ros_harness import RATE, Harness, _stop, make_models


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


def _contiguous_in(rows, published) -> bool:
    """``rows`` appear in ``published`` one after the other, none missing, none repeated: one row per command.
    Hold commands (zeros, published while the policy holds, e.g. on a loaded machine's stale spell) are no
    decisions and so no rows."""
    sent = np.asarray([c for c in published if any(c)], np.float32)
    rows = np.asarray(rows, np.float32)
    return any((sent[k : k + len(rows)] == rows).all() for k in range(len(sent) - len(rows) + 1))


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
    assert [n.name for n in nodes] == ["teleop_input_node", "policy_node", "teleop_mux_node", "recorder_node"]
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
    published: list[list[float]] = []  # what the policy node itself sent, before the mux
    ros.node.create_subscription(
        Float64MultiArray, "/policy/commands", lambda m: published.append(list(m.data)), 50
    )
    start_srv = ros.node.create_client(Trigger, "/recorder_node/start")
    stop_srv = ros.node.create_client(SetBool, "/recorder_node/stop")
    procs = start(nodes, {"recorder_node": {"record_on": "decision"}})  # auto could pick timer during a hold
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
        procs[3].send_signal(signal.SIGKILL)
        procs[3].wait(timeout=10)
    finally:
        logs = [_stop(p) for p in procs][1:]
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
    # every recorded policy action is a command the policy published, in the order it published them
    assert _contiguous_in(ep["policy_action"], published), "recorded policy actions differ from what it sent"
    np.testing.assert_array_equal(ep["action"][~flag], ep["policy_action"][~flag])
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
    _session_feeds_rlif(store, tmp_path)


def _session_feeds_rlif(store, tmp_path) -> None:
    """The lab's loop after a recording: `finetune --algo rlif --data SESSION.zarr` learns from the takeovers the
    ROS recorder wrote (no simulator, no task reward), the result exports as the next model, and that model runs
    the closed loop through ROS."""
    from robostack.policies import build_policy, save_policy

    from ros_harness import SPEC, _ks

    stats = {"obs/state": _ks(4), "obs/object": _ks(6), "action": _ks(2)}
    start = build_policy("gaussian", {"hidden_dims": [32], "horizon": 1, "n_action_steps": 1}, SPEC, stats)
    save_policy(start, tmp_path / "start", stats)
    out = tmp_path / "rlif"
    proc = run_cli("finetune", "--algo", "rlif", "--from", tmp_path / "start", "--data", store, "--out", out,
                   "--updates=20", "--sac.batch_size=16", "--sac.critics=4", "--log_every=10")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["takeover_onsets"] == 1  # the one takeover of the recorded episode
    assert run_cli("export", "--policy", out, "--out", tmp_path / "next.onnx").returncode == 0
    # ... and the next model drives the simulated robot in closed loop through ROS
    proc = run_cli(
        "eval", "--policy", tmp_path / "next.onnx", "--task", "push", "--episodes", "1", "--ros", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy_status"]["commands"] > 0


def test_estop_stops_the_human_during_a_takeover(ros, model, tmp_path):
    """The mux is the last node before the controller: a latched e-stop holds (zeros) every path through it."""
    from launch_reader import PKG_SHARE, read_launch, start

    nodes = read_launch(
        PKG_SHARE["robostack_ros"] / "launch" / "record.launch.xml", {"store": str(tmp_path / "x")}
    )
    mux = [n for n in nodes if n.name == "teleop_mux_node"]
    human = ros.node.create_publisher(Float64MultiArray, "/teleop/commands", 10)
    takeover = ros.node.create_publisher(Bool, "/teleop/takeover", 10)
    estop = ros.node.create_publisher(Bool, "/estop", 10)
    out: list[tuple[float, list[float]]] = []
    ros.node.create_subscription(
        Float64MultiArray,
        "/forward_velocity_controller/commands",
        lambda m: out.append((time.monotonic(), list(m.data))),
        50,
    )
    ros.send.update(state=False, object=False)
    reset = ros.node.create_client(Trigger, "/teleop_mux_node/reset")
    procs = start(mux)

    def drive(seconds):
        for _ in range(int(seconds * RATE)):
            human.publish(Float64MultiArray(data=[0.5, -0.5]))
            ros.spin(1.0 / RATE)

    try:
        assert reset.wait_for_service(timeout_sec=30)
        assert ros.wait_for(lambda: ros.node.count_subscribers("/teleop/takeover") >= 1, 10)
        takeover.publish(Bool(data=True))
        ros.spin(0.2)
        drive(1.0)
        assert [0.5, -0.5] in [c for _, c in out], "the human's commands never reached the controller"
        estop.publish(Bool(data=True))
        t_estop = time.monotonic()
        drive(1.0)  # the human keeps pushing the stick
        after = [(t, c) for t, c in out if t > t_estop]
        first_zero = next((t for t, c in after if c == [0.0, 0.0]), None)
        assert first_zero is not None and first_zero - t_estop <= 1.0 / RATE, "no hold within one period"
        assert all(c == [0.0, 0.0] for t, c in after if t >= first_zero), "a human command passed the e-stop"
        assert len([1 for t, _ in after if t >= first_zero]) >= RATE // 2, "the hold repeats every period"
        estop.publish(Bool(data=False))
        drive(0.3)
        assert all(c == [0.0, 0.0] for t, c in out if t >= first_zero), "the e-stop is latched"
        fut = reset.call_async(Trigger.Request())
        assert ros.wait_for(fut.done, 5) and fut.result().success
        n = len(out)
        drive(0.5)
        assert [0.5, -0.5] in [c for _, c in out[n:]], "forwarding resumes after ~/reset"
    finally:
        logs = [_stop(p) for p in procs]
    assert "E-STOP engaged" in logs[0], logs[0]


def test_robot_launch_drives_the_sim_robot_and_recording_is_aligned(ros, model, tmp_path):
    """robot.launch.xml (the policy node as on a robot) against the simulated robot, with the recorder: every
    recorded row holds the joint state of exactly the step (named by the robot's stamp) its action was computed
    from, and the action the policy published for it."""
    from launch_reader import PKG_SHARE, read_launch, start

    share = PKG_SHARE["robostack_ros"]
    policy = read_launch(share / "launch" / "robot.launch.xml", {"model": str(model / "push_like.onnx")})
    assert [n.name for n in policy] == ["policy_node"]
    record = [n for n in read_launch(share / "launch" / "record.launch.xml", {"store": str(tmp_path / "a.zarr")})
              if n.name == "recorder_node"]  # fmt: skip
    sim = [
        n
        for n in read_launch(share / "launch" / "sim.launch.xml", {"model": "unused"})
        if n.name == "sim_robot_node"
    ]
    ros.send.update(state=False, object=False)  # the sim robot publishes the observations
    steps: dict[float, str] = {}
    joints: dict[float, list[float]] = {}

    def stamp(h):
        return h.stamp.sec + h.stamp.nanosec * 1e-9

    ros.node.create_subscription(
        Header, "/sim_robot_node/step", lambda m: steps.__setitem__(stamp(m), m.frame_id), 100
    )
    ros.node.create_subscription(
        JointState, "/robot/joint_states",
        lambda m: joints.__setitem__(stamp(m.header), [*m.position, *m.velocity]), 100,
    )  # fmt: skip
    published: list[list[float]] = []
    ros.node.create_subscription(
        Float64MultiArray,
        "/forward_velocity_controller/commands",
        lambda m: published.append(list(m.data)),
        100,
    )
    start_srv = ros.node.create_client(Trigger, "/recorder_node/start")
    stop_srv = ros.node.create_client(SetBool, "/recorder_node/stop")
    procs = start(sim + policy + record, {"recorder_node": {"record_on": "decision"}})
    try:
        assert ros.wait_for(lambda: len(published) >= 10, 90), "robot.launch.xml's policy never commanded"
        res = _start_episode(ros, start_srv)
        assert "one step per decision" in res.message, res.message
        ros.spin(2.0)
        assert _call(ros, stop_srv, SetBool.Request(data=False)).success
    finally:
        logs = [_stop(p) for p in procs]
    ep = EpisodeStore(tmp_path / "a.zarr").read_episode(0)
    n = len(ep["timestamp"])
    assert n >= 20, (n, logs[2])
    named = [steps.get(float(t)) for t in ep["timestamp"]]
    assert all(named), "every row's stamp is one the robot published"
    order = [int(x.split(":")[1]) + 100_000 * int(x.split(":")[0]) for x in named]
    assert order == sorted(order), "rows follow the robot's steps"
    for t, state in zip(ep["timestamp"], ep["obs/state"], strict=True):
        np.testing.assert_array_equal(state, np.asarray(joints[float(t)], np.float32))
    assert _contiguous_in(ep["action"], published), "recorded actions differ from what the policy sent"
    np.testing.assert_array_equal(ep["action"], ep["policy_action"])


def test_joystick_takeover_through_input_node_mux_and_recorder(ros, model, tmp_path):
    """sensor_msgs/Joy -> teleop_input_node (the push gamepad mapping) -> teleop_mux_node -> recorder_node, all real
    nodes over DDS: the dead-man button takes over, the sticks' mapped command is executed and recorded beside the
    policy's proposals, releasing it hands back."""
    from launch_reader import PKG_SHARE, read_launch, start

    store = tmp_path / "joy.zarr"
    nodes = read_launch(
        PKG_SHARE["robostack_ros"] / "launch" / "record.launch.xml",
        {"store": str(store), "with_policy": "true", "model": str(model / "model.onnx")},
    )
    joy = ros.node.create_publisher(Joy, "/joy", 10)
    executed: list[list[float]] = []
    ros.node.create_subscription(
        Float64MultiArray,
        "/forward_velocity_controller/commands",
        lambda m: executed.append(list(m.data)),
        10,
    )
    start_srv = ros.node.create_client(Trigger, "/recorder_node/start")
    stop_srv = ros.node.create_client(SetBool, "/recorder_node/stop")
    procs = start(nodes, {"recorder_node": {"record_on": "decision"}})

    def pad(seconds: float, dead_man: bool, axes: tuple[float, float]) -> None:
        for _ in range(int(seconds * RATE)):
            buttons = [0] * 11
            buttons[4] = int(dead_man)  # LB: the mapping's takeover button
            joy.publish(Joy(axes=[axes[0], axes[1], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], buttons=buttons))
            ros.spin(1.0 / RATE)

    try:
        assert ros.wait_for(lambda: len(executed) >= 10, 60), "the policy's commands never reached the robot"
        _start_episode(ros, start_srv)
        pad(1.0, False, (0.55, -0.55))  # sticks deflected but no dead man: the policy keeps driving
        pad(1.0, True, (0.55, -0.55))
        pad(1.0, False, (0.0, 0.0))
        res = _call(ros, stop_srv, SetBool.Request(data=True))
        assert res.success and "committed" in res.message, res.message
    finally:
        logs = [_stop(p) for p in procs]
    assert "takeover" in logs[0] and "hand back" in logs[0], logs[0]
    ep = EpisodeStore(store).read_episode(0)
    flag = ep["is_intervention"].astype(bool)
    runs = np.flatnonzero(np.diff(np.r_[0, flag.astype(int), 0]))
    assert len(runs) == 2, flag  # one takeover span
    # mapping: index 0 = axis0, index 1 = -axis1, dead zone 0.1 rescaled: (0.55 - 0.1) / 0.9 = 0.5. The switch and
    # the command travel on two topics, so a step at either edge of the span may see one before the other.
    inner = flag.sum() - 4
    np.testing.assert_allclose(ep["action"][flag][2:-2], [[0.5, 0.5]] * inner, atol=1e-6)
    np.testing.assert_allclose(ep["human_action"][flag][2:-2], [[0.5, 0.5]] * inner, atol=1e-6)
    np.testing.assert_array_equal(ep["action"][~flag], ep["policy_action"][~flag])
    assert np.abs(ep["policy_action"][flag]).max() > 0.0  # the policy's proposals kept during the takeover


def test_teleop_tool_drives_a_robot_through_ros(ros, model, tmp_path):
    """`robostack teleop --ros` (its own process, a scripted keyboard) against record.launch.xml: its Joy messages
    go through the robot's teleop_input_node (gamepad mapping emulated from the keyboard's), the mux and the
    recorder; its 'next' commits the episode through the recorder's service; its window shows the camera topic."""
    import os
    import subprocess
    import sys

    import yaml
    from sensor_msgs.msg import Image

    from launch_reader import PKG_SHARE, read_launch, start

    store = tmp_path / "robot.zarr"
    nodes = read_launch(
        PKG_SHARE["robostack_ros"] / "launch" / "record.launch.xml",
        {"store": str(store), "with_policy": "true", "model": str(model / "model.onnx")},
    )
    cam = ros.node.create_publisher(Image, "/camera/image_raw", 2)
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[..., 1] = 200  # a green camera
    ros.node.create_timer(
        0.1,
        lambda: cam.publish(Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=pixels.tobytes())),
    )
    script = tmp_path / "op.yaml"
    script.write_text(yaml.safe_dump({"events": [
        {"episode": 0, "step": 20, "press": ["left shift", "right"]},
        {"episode": 0, "step": 40, "release": ["left shift", "right"]},
        {"episode": 0, "step": 60, "tap": ["n"]},
    ]}))  # fmt: skip
    procs = start(nodes, {"recorder_node": {"record_on": "decision"}})
    executed: list[list[float]] = []
    ros.node.create_subscription(
        Float64MultiArray,
        "/forward_velocity_controller/commands",
        lambda m: executed.append(list(m.data)),
        10,
    )
    try:
        assert ros.wait_for(lambda: len(executed) >= 10, 60), "the policy's commands never reached the robot"
        env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
        tool = subprocess.Popen(
            [sys.executable, "-m", "robostack.cli.main", "teleop", "--ros", "--task", "push", "--device",
             f"script:{script}", "--episodes", "1", "--show", "--screenshot", str(tmp_path / "shot.png")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while tool.poll() is None and time.monotonic() < deadline:
            ros.spin(0.1)
        out, err = tool.communicate(timeout=5)
    finally:
        logs = [_stop(p) for p in procs]
    assert tool.returncode == 0, err
    assert "committed" in out, out
    assert "takeover" in logs[0] and "hand back" in logs[0], logs[0]
    ep = EpisodeStore(store).read_episode(0)
    flag = ep["is_intervention"].astype(bool)
    assert 15 <= flag.sum() <= 25, flag.sum()  # 20 control steps of the operator's (rates differ by a little)
    inner = flag.sum() - 4  # edges: the switch and the command travel on two topics
    np.testing.assert_allclose(ep["human_action"][flag][2:-2], [[1.0, 0.0]] * inner, atol=1e-6)
    np.testing.assert_allclose(ep["action"][flag][2:-2], [[1.0, 0.0]] * inner, atol=1e-6)
    import imageio.v2 as imageio

    shot = imageio.imread(tmp_path / "shot.png")[..., :3].astype(int)
    assert (np.abs(shot - [0, 200, 0]).sum(axis=-1) < 10).mean() > 0.2  # the camera's frame fills the view
