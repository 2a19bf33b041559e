"""``teleop_input_node``: a joystick (``sensor_msgs/Joy``, what the standard ``joy`` driver publishes) becomes the
human command stream and the takeover switch of ``teleop_mux_node``, through the same mapping files as
``robostack teleop`` (``configs/teleop/<task>_gamepad.yaml``: ``axisN`` is ``Joy.axes[N]``, ``buttonN`` is
``Joy.buttons[N]``).

- ``human_topic`` (std_msgs/Float64MultiArray): the mapped command, on every Joy message and at ``rate_hz`` from the
  latest one -- but only while that message is younger than ``joy_timeout_s``: a dead joystick driver silences the
  stream, and the mux then holds (its ``human_timeout_s``) instead of replaying a stale deflection.
- ``takeover_topic`` (std_msgs/Bool): ``takeover: hold`` (default, a dead-man button) publishes true while the
  button is held and false when released (and once false when the joystick goes silent); ``toggle`` flips on each
  press. Published on every change and at ``rate_hz`` while the joystick speaks, so a mux started later learns the
  state; a silent joystick publishes nothing, so other takeover sources (a key, a script) stay usable.
- the gripper element toggles on its button's press; at a takeover it starts open.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Float64MultiArray

from robostack.errors import RobostackError
from robostack.ros.spin import run_node
from robostack.teleop.mapping import DeviceState, TeleopMapping, load_mapping

PARAMS: dict[str, Any] = {
    "task": "push",
    "mapping": "auto",  # mapping YAML; auto: configs/teleop/<task>_gamepad.yaml
    "action_dim": 0,  # 0: the task's action size
    "joy_topic": "/joy",
    "human_topic": "/teleop/commands",
    "takeover_topic": "/teleop/takeover",
    "takeover": "hold",  # hold | toggle
    "rate_hz": 20.0,
    "joy_timeout_s": 0.5,
}


def joy_state(msg: Joy) -> DeviceState:
    return DeviceState(
        {f"axis{i}": float(v) for i, v in enumerate(msg.axes)},
        frozenset(f"button{i}" for i, b in enumerate(msg.buttons) if b),
    )


class TeleopInputNode(Node):
    def __init__(self, name: str = "teleop_input_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for k, v in PARAMS.items():
            self.declare_parameter(k, v)
        p = lambda n: self.get_parameter(n).value  # noqa: E731
        task = str(p("task"))
        dim = int(p("action_dim"))
        if dim <= 0:
            from robostack.sim.registry import task_spec

            dim = int(task_spec(task).action.shape[0])
        self.dim = dim
        self.mapping: TeleopMapping = load_mapping(
            None if str(p("mapping")) in ("", "auto") else str(p("mapping")), task, "gamepad", dim
        )
        self.mode = str(p("takeover"))
        if self.mode not in ("hold", "toggle"):
            raise RobostackError(f"takeover must be hold or toggle, got '{self.mode}'")
        self.timeout = float(p("joy_timeout_s"))
        self.cmd_pub = self.create_publisher(Float64MultiArray, str(p("human_topic")), 10)
        self.takeover_pub = self.create_publisher(Bool, str(p("takeover_topic")), 10)
        self.create_subscription(Joy, str(p("joy_topic")), self._on_joy, 10)
        self.create_timer(1.0 / float(p("rate_hz")), self._tick)
        self.state = DeviceState()
        self.prev: frozenset[str] = frozenset()
        self.last_joy = -1e9
        self.takeover = False
        self.gripper_closed = False
        self._checked = False
        self.get_logger().info(
            f"{p('joy_topic')} -> {p('human_topic')} + {p('takeover_topic')} ({self.mapping.path}, {self.mode})"
        )

    def _check(self, msg: Joy) -> None:
        """Once: every input the mapping names exists on this joystick."""
        for problem in self.mapping.missing_gamepad_inputs(len(msg.axes), len(msg.buttons)):
            self.get_logger().error(f"{self.mapping.path}: {problem} (as its Joy messages report)")
        self._checked = True

    def _on_joy(self, msg: Joy) -> None:
        if not self._checked:
            self._check(msg)
        self.last_joy = time.monotonic()
        self.state = joy_state(msg)
        pressed = self.state.buttons - self.prev
        self.prev = self.state.buttons
        key = self.mapping.controls["takeover"]
        before = self.takeover
        if self.mode == "hold":
            self.takeover = key in self.state.buttons
        elif key in pressed:
            self.takeover = not self.takeover
        if self.takeover and not before:
            self.gripper_closed = False
        grip = self.mapping.gripper
        if grip is not None and grip.button in pressed:
            self.gripper_closed = not self.gripper_closed
        if self.takeover != before:
            self.takeover_pub.publish(Bool(data=self.takeover))
            self.get_logger().info("takeover" if self.takeover else "hand back")
        self._publish_command()

    def _publish_command(self) -> None:
        cmd = self.mapping.command(self.state, self.gripper_closed, self.dim)
        self.cmd_pub.publish(Float64MultiArray(data=[float(v) for v in cmd]))

    def _tick(self) -> None:
        """While the joystick speaks: the switch and the command at the node's rate. When it falls silent: nothing
        (other takeover sources stay usable), except that a held dead-man switch is released once."""
        if time.monotonic() - self.last_joy > self.timeout:
            if self.takeover and self.mode == "hold":
                self.takeover = False
                self.takeover_pub.publish(Bool(data=False))
                self.get_logger().warning(f"no Joy message for {self.timeout} s: hand back")
            return
        self.takeover_pub.publish(Bool(data=self.takeover))
        self._publish_command()


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopInputNode, "teleop_input_node", args)


if __name__ == "__main__":
    sys.exit(main())
