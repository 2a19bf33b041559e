"""``robostack teleop --ros``: the operator's window against a robot.

The same tool as in simulation, but the scene is the robot's camera (``sensor_msgs/Image`` topics, rgb8/bgr8), the
controller indicator is the mux's ``~/is_intervention``, and what the operator does goes out as ``sensor_msgs/Joy``
on ``/joy`` -- the message the robot's ``teleop_input_node`` turns into commands and the takeover through the robot's
gamepad mapping. A local gamepad is sent as it is (its axes and buttons). A local keyboard emulates that gamepad:
for each action element the robot's mapping binds, the axis value whose mapped command equals the keyboard's
command (dead zone and scale inverted), and the robot's takeover / gripper buttons pressed with the keyboard's.
The takeover button is sent *held* while the operator has control (``--takeover toggle`` toggles it locally), so
the robot side keeps its dead-man semantics.

Episodes are the recorder's: ``~/start`` when a session or episode begins, ``next`` commits it through ``~/stop``
(success: the operator's mark; unmarked episodes are committed as successes), ``discard`` drops it through
``~/discard``, ``quit`` discards the open one and ends the session.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robostack.errors import RobostackError, SpecError
from robostack.ros.topic_map import ObsSource, to_array
from robostack.teleop.devices import Device, ScriptDevice
from robostack.teleop.mapping import DeviceState, TeleopMapping
from robostack.teleop.session import RateMeter, Status

JOY_AXES = 8
JOY_BUTTONS = 11


def emulate_gamepad(
    command: np.ndarray, held: set[str], robot: TeleopMapping
) -> tuple[list[float], list[int], list[int]]:
    """Joy axes and buttons that make ``robot`` (a gamepad mapping) command ``command``; ``held`` names the
    robot-side controls to press (``takeover``, ``gripper``...). Returns (axes, buttons, unbound action indices)."""
    axes = [0.0] * JOY_AXES
    buttons = [0] * JOY_BUTTONS
    bound = set()
    for b in robot.action:
        n = int((b.axis or "axis0")[4:])
        v = float(command[b.index]) / b.scale if b.scale else 0.0
        raw = 0.0 if v == 0.0 else float(np.sign(v)) * (min(abs(v), 1.0) * (1.0 - b.deadzone) + b.deadzone)
        while len(axes) <= n:
            axes.append(0.0)
        axes[n] = raw
        bound.add(b.index)
    names = {robot.controls[c] for c in held if c in robot.controls}
    if "gripper" in held and robot.gripper is not None:
        names.add(robot.gripper.button)
        bound.add(robot.gripper.index)
    for name in names:
        n = int(name[6:])
        while len(buttons) <= n:
            buttons.append(0)
        buttons[n] = 1
    unbound = [i for i in range(len(command)) if i not in bound and command[i] != 0.0]
    return axes, buttons, unbound


@dataclass
class RemoteConfig:
    task: str
    device: str
    episodes: int = 10
    camera_topics: list[str] = field(default_factory=lambda: ["/camera/image_raw"])
    joy_topic: str = "/joy"
    mux: str = "/teleop_mux_node"
    recorder: str = "/recorder_node"
    takeover: str = "hold"
    rate_hz: float = 20.0
    window: bool = True
    view_size: int = 256
    service_timeout_s: float = 10.0


@dataclass
class RemoteEpisode:
    index: int
    steps: int = 0
    committed: bool = False
    message: str = ""
    takeovers: int = 0
    human_steps: int = 0


class RemoteTeleop:
    def __init__(self, cfg: RemoteConfig, local: TeleopMapping, robot: TeleopMapping, device: Device,
                 window: Any = None) -> None:  # fmt: skip
        import rclpy
        from sensor_msgs.msg import Image, Joy
        from std_msgs.msg import Bool
        from std_srvs.srv import SetBool, Trigger

        self.cfg, self.local, self.robot, self.device, self.window = cfg, local, robot, device, window
        self.Joy, self.Trigger, self.SetBool = Joy, Trigger, SetBool
        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node("robostack_teleop")
        self.joy_pub = self.node.create_publisher(Joy, cfg.joy_topic, 10)
        self.frames: dict[str, np.ndarray] = {}
        for topic in cfg.camera_topics:
            self.node.create_subscription(Image, topic, lambda m, t=topic: self._on_image(t, m), 2)
        self.mux_human = False
        self.node.create_subscription(Bool, f"{cfg.mux}/is_intervention", self._on_flag, 10)
        self.start_srv = self.node.create_client(Trigger, f"{cfg.recorder}/start")
        self.stop_srv = self.node.create_client(SetBool, f"{cfg.recorder}/stop")
        self.discard_srv = self.node.create_client(Trigger, f"{cfg.recorder}/discard")
        self.status = Status()
        self.control_rate, self.display_rate = RateMeter(), RateMeter()
        self.warned: set[int] = set()

    def _on_image(self, topic: str, msg: Any) -> None:
        try:
            self.frames[topic] = to_array(ObsSource(topic, topic, "image"), msg)
        except SpecError:  # an encoding the window cannot show: keep the last frame
            return

    def _on_flag(self, msg: Any) -> None:
        self.mux_human = bool(msg.data)

    def _call(self, client: Any, request: Any) -> Any:
        if not client.wait_for_service(timeout_sec=self.cfg.service_timeout_s):
            raise RobostackError(f"{client.srv_name}: no such service (is record.launch.xml running?)")
        fut = client.call_async(request)
        deadline = time.monotonic() + self.cfg.service_timeout_s
        while not fut.done() and time.monotonic() < deadline:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
        if not fut.done():
            raise RobostackError(f"{client.srv_name}: no answer in {self.cfg.service_timeout_s} s")
        return fut.result()

    def _start_episode(self) -> str:
        """The recorder refuses to start until it has heard every observation topic: ask again for a few seconds."""
        res = None
        for _ in range(20):
            res = self._call(self.start_srv, self.Trigger.Request())
            if res.success:
                return res.message
            t_end = time.monotonic() + 0.5
            while time.monotonic() < t_end:
                self.rclpy.spin_once(self.node, timeout_sec=0.05)
        raise RobostackError(
            f"the recorder would not start an episode: {res.message if res else 'no answer'}"
        )

    def _frame(self) -> np.ndarray:
        size = self.cfg.view_size
        imgs = [self.frames[t] for t in self.cfg.camera_topics if t in self.frames]
        if not imgs:
            return np.full((size, size, 3), 60, np.uint8)
        import cv2

        tiles = [cv2.resize(np.ascontiguousarray(im), (size, size)) for im in imgs]
        return np.concatenate(tiles, axis=1)

    def run(self) -> list[RemoteEpisode]:
        cfg, ctl = self.cfg, self.local.controls
        period = 1.0 / cfg.rate_hz
        episodes: list[RemoteEpisode] = []
        ep = RemoteEpisode(0, message=self._start_episode())
        human = False
        gripper_press = False
        override: bool | None = None
        prev: frozenset[str] = frozenset()
        deadline = time.perf_counter()
        quit_ = False
        try:
            while True:
                deadline += period
                self.rclpy.spin_once(self.node, timeout_sec=0.0)
                state: DeviceState = self.device.poll(ep.index, ep.steps)
                pressed = state.buttons - prev
                prev = state.buttons
                end = None
                if ctl.get("quit") in pressed or getattr(self.device, "quit_requested", False):
                    end = "quit"
                elif ctl.get("discard") in pressed:
                    end = "discard"
                elif ctl.get("next") in pressed and ep.steps > 0:
                    end = "next"
                if ctl.get("success") in pressed:
                    override = True
                if ctl.get("failure") in pressed:
                    override = False
                was = human
                if cfg.takeover == "hold":
                    human = ctl["takeover"] in state.buttons
                elif ctl["takeover"] in pressed:
                    human = not human
                if human and not was:
                    ep.takeovers += 1
                ep.human_steps += int(human)
                gripper_press = self.local.gripper is not None and self.local.gripper.button in pressed
                self._send(state, human, gripper_press)
                ep.steps += 1
                self.control_rate.tick(time.perf_counter())
                st = self.status
                st.episode, st.step, st.human, st.takeovers = ep.index, ep.steps, self.mux_human, ep.takeovers
                if end is not None:
                    self._send(DeviceState(), False, False)  # release everything before the episode ends
                    if end == "next":
                        res = self._call(self.stop_srv, self.SetBool.Request(data=override is not False))
                        ep.committed, ep.message = bool(res.success), res.message
                        st.committed += int(ep.committed)
                        st.successes += int(ep.committed and override is not False)
                    else:
                        res = self._call(self.discard_srv, self.Trigger.Request())
                        ep.message = res.message
                    episodes.append(ep)
                    quit_ = end == "quit" or st.committed >= cfg.episodes
                    if isinstance(self.device, ScriptDevice) and self.device.finished(ep.index + 1):
                        quit_ = True
                    if quit_:
                        break
                    ep = RemoteEpisode(ep.index + 1, message=self._start_episode())
                    human, override = False, None
                self._pace(deadline)
                if time.perf_counter() - deadline > period:
                    deadline = time.perf_counter()
        finally:
            if not quit_ and ep not in episodes:  # an error mid-episode: do not leave it open on the robot
                with contextlib.suppress(RobostackError):
                    self._call(self.discard_srv, self.Trigger.Request())
            self.device.close()
            self.node.destroy_node()
            self.rclpy.shutdown()
        return episodes

    def _send(self, state: DeviceState, human: bool, gripper_press: bool) -> None:
        msg = self.Joy()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        if self.local.device == "gamepad":  # the local pad is the robot's pad: forward it, the switch as held
            n_axes = max([int(k[4:]) + 1 for k in state.axes] + [JOY_AXES])
            axes = [float(state.axes.get(f"axis{i}", 0.0)) for i in range(n_axes)]
            buttons = [0] * JOY_BUTTONS
            for b in state.buttons:
                if b.startswith("button") and b[6:].isdigit():
                    n = int(b[6:])
                    buttons += [0] * max(0, n + 1 - len(buttons))
                    buttons[n] = 1
            take = int(self.robot.controls["takeover"][6:])
            buttons += [0] * max(0, take + 1 - len(buttons))
            buttons[take] = int(human)
        else:
            dim = max([b.index for b in self.robot.action] + [b.index for b in self.local.action]
                      + [g.index for g in (self.robot.gripper, self.local.gripper) if g]) + 1  # fmt: skip
            cmd = self.local.command(state, False, dim)
            if self.local.gripper is not None:
                cmd[self.local.gripper.index] = 0.0  # the gripper goes as a button press, not a value
            held = {"takeover"} if human else set()
            if gripper_press:
                held.add("gripper")
            axes, buttons, unbound = emulate_gamepad(cmd, held, self.robot)
            for i in set(unbound) - self.warned:
                self.warned.add(i)
                self.node.get_logger().warning(f"action element {i}: the robot's mapping binds no axis to it")
        msg.axes = [float(a) for a in axes]
        msg.buttons = [int(b) for b in buttons]
        self.joy_pub.publish(msg)

    def _pace(self, deadline: float) -> None:
        if self.window is not None and deadline - time.perf_counter() > 0.01:
            self.status.control_hz = self.control_rate.hz
            self.status.display_hz = self.display_rate.hz
            self.window.draw(self._frame(), self.status)
            self.display_rate.tick(time.perf_counter())
        wait = deadline - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
