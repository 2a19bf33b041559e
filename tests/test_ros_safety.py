"""The policy node's safety pieces and topic-map parsing, without ROS."""

from __future__ import annotations

import numpy as np
import pytest

from robostack.errors import RobostackError
from robostack.ros.safety import ActionGuard, EStopLatch, HoldCommand, OnceLogger, StaleWatchdog, resolve_hold
from robostack.ros.topic_map import TopicMap


def test_watchdog_needs_every_stream_fresh():
    w = StaleWatchdog(["a", "b"], max_age_s=0.25)
    assert w.stale(0.0) == ["a", "b"]  # never seen counts as stale
    w.feed("a", 1.0)
    w.feed("b", 1.1)
    assert w.stale(1.2) == [] and w.stale(1.26) == ["a"] and w.stale(1.4) == ["a", "b"]


def test_watchdog_ages_stamped_data_by_its_stamp_within_the_clock_skew():
    w = StaleWatchdog(["js", "arr"], max_age_s=0.25, clock_skew_s=0.05)
    w.feed("js", 10.0, stamped=True)  # data taken at 10.0
    w.feed("arr", 10.2)  # arrival time: no skew allowance
    assert w.stale(10.29) == [] and w.stale(10.31) == ["js"]  # 0.25 + 0.05 skew for the stamped stream
    assert w.stale(10.46) == ["js", "arr"]
    w.feed("js", 10.5, stamped=True)  # stamped slightly in the future: within the skew, fresh
    assert "js" not in w.stale(10.46)
    w.feed("js", 11.0, stamped=True)  # far in the future: its age cannot be known
    assert "js" in w.stale(10.46)


def test_hold_per_command_interface():
    assert resolve_hold("auto", "velocity") == "zero" and resolve_hold("auto", "effort") == "zero"
    assert resolve_hold("auto", "position") == "last_position"
    assert resolve_hold("silent", "velocity") == "silent"
    for hold, interface in (("zero", "position"), ("last_position", "velocity"), ("bogus", "velocity")):
        with pytest.raises(ValueError):
            resolve_hold(hold, interface)
    with pytest.raises(ValueError):
        resolve_hold("auto", "torque")
    z = HoldCommand("zero", 2)
    assert z.command().tolist() == [0.0, 0.0]
    p = HoldCommand("last_position", 2)
    assert p.command() is None  # nothing commanded yet: nothing to hold
    p.commanded(np.array([0.3, -0.1]))
    assert p.command().tolist() == [0.3, -0.1]
    assert HoldCommand("silent", 2).command() is None


def test_guard_refuses_nan_clips_and_limits_rate():
    g = ActionGuard(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), max_delta=0.1)
    assert g(np.array([np.nan, 0.0])).action is None
    r = g(np.array([2.0, 0.0]))
    assert r.clipped and np.allclose(r.action, [1.0, 0.0])
    r = g(np.array([0.0, 0.5]))  # limited against the last command
    assert r.rate_limited and np.allclose(r.action, [0.9, 0.1])
    assert g(np.zeros(3)).action is None


def test_estop_latches_until_reset_and_logger_logs_once():
    e = EStopLatch()
    assert e.trigger("x") and not e.trigger("y") and e.engaged and e.reason == "x"
    assert e.reset() and not e.engaged and not e.reset()
    logs: list[str] = []
    log = OnceLogger(logs.append)
    for _ in range(5):
        log.set("stale", True, "stale!", "fresh")
    log.set("stale", False, cleared="fresh")
    assert logs == ["stale!", "fresh"]


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({}, "needs an 'observations' mapping"),
        ({"observations": {"obs/a": {"topic": "/a"}}}, "needs 'topic' and 'type'"),
        ({"observations": {"obs/a": {"topic": "/a", "type": "laser"}}}, "has type 'laser'"),
        ({"observations": {"obs/a": {"topic": "/a", "type": "joint_state"}}}, "must list its joints by name"),
        ({"observations": {}, "command": {"type": "joint_trajectory"}}, "must list its joints"),
    ],
)
def test_topic_map_errors(doc, msg):
    with pytest.raises(RobostackError, match=msg):
        TopicMap.from_dict(doc)


def test_messages_to_arrays():
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image, JointState

    from robostack.errors import SpecError
    from robostack.ros.topic_map import ObsSource, to_array

    js = ObsSource("obs/state", "/js", "joint_state", ["b", "a"], ["position", "velocity"])
    msg = JointState(name=["a", "b", "c"], position=[1.0, 2.0, 3.0], velocity=[0.1, 0.2, 0.3])
    np.testing.assert_allclose(to_array(js, msg), [2.0, 1.0, 0.2, 0.1])  # by name, in the map's order
    with pytest.raises(SpecError, match=r"joint\(s\) \['b'\] not in /js"):
        to_array(js, JointState(name=["a"], position=[1.0], velocity=[0.0]))
    with pytest.raises(SpecError, match="1 velocity values for 2 joints"):
        to_array(js, JointState(name=["a", "b"], position=[1.0, 2.0], velocity=[0.0]))
    pose = PoseStamped()
    pose.pose.position.x, pose.pose.orientation.w = 0.5, 1.0
    np.testing.assert_allclose(to_array(ObsSource("obs/p", "/p", "pose"), pose), [0.5, 0, 0, 0, 0, 0, 1.0])
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)  # rows padded to a 12-byte step, as drivers may send them
    padded[:, :9] = rgb.reshape(2, 9)
    cam = ObsSource("obs/image_front", "/cam", "image")
    img = Image(height=2, width=3, encoding="rgb8", step=12, data=padded.tobytes())
    np.testing.assert_array_equal(to_array(cam, img), rgb)
    img.encoding = "bgr8"
    np.testing.assert_array_equal(to_array(cam, img), rgb[..., ::-1])
    img.encoding = "mono16"
    with pytest.raises(SpecError, match="encoding 'mono16'"):
        to_array(cam, img)
