"""``teleop_mux_node``: the policy drives unless a human takes over; both actions and the switch are published.

Inputs: the policy's commands (``policy_topic``) and the human's (``human_topic``), both std_msgs/Float64MultiArray,
and a takeover switch (``takeover_topic``, std_msgs/Bool: a button or key; true = human, false = policy). With
``auto_takeover`` a live human stream (a message within ``human_timeout_s``) takes over without the button.
Output: the selected command on ``output_topic``; ``~/is_intervention`` (std_msgs/Bool) with every forwarded
command; ``~/policy_action`` and ``~/human_action`` re-published so a recorder stores both.

This node is the last one before the controller, so it is the gate every command path passes:
- a latched e-stop (``~/estop`` or ``estop_topic``, std_msgs/Bool true) drops the policy's *and the human's*
  commands and holds until ``~/reset`` (std_srvs/Trigger);
- while the human is in control but silent for longer than ``human_timeout_s``, it holds.
Holding is a command, published every ``1 / rate_hz`` s: zeros on a velocity/effort interface, the last forwarded
command on a position interface (``hold: auto``; see ``robostack.ros.safety.resolve_hold``), nothing only with
``hold: silent``. Each reaction is logged once when it starts and once when it clears.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from robostack.errors import RobostackError
from robostack.ros.safety import EStopLatch, HoldCommand, OnceLogger, resolve_hold
from robostack.ros.spin import run_node

PARAMS: dict[str, Any] = {
    "policy_topic": "/policy/commands",
    "human_topic": "/teleop/commands",
    "takeover_topic": "/teleop/takeover",
    "output_topic": "/forward_velocity_controller/commands",
    "human_timeout_s": 0.5,
    "auto_takeover": False,
    "command_interface": "velocity",  # velocity | effort | position (of the controller behind output_topic)
    "hold": "auto",  # auto | zero | last_position | silent
    "action_dim": 0,  # size of a zero hold before any command was seen; 0: learn it from the first command
    "rate_hz": 20.0,  # how often a hold is published
    "estop_topic": "/estop",  # shared e-stop besides ~/estop; empty: ~/estop only
}


class TeleopMuxNode(Node):
    def __init__(self, name: str = "teleop_mux_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for k, v in PARAMS.items():
            self.declare_parameter(k, v)
        p = lambda n: self.get_parameter(n).value  # noqa: E731
        try:
            mode = resolve_hold(str(p("hold")), str(p("command_interface")))
        except ValueError as exc:
            raise RobostackError(str(exc)) from None
        self.timeout = float(p("human_timeout_s"))
        self.auto = bool(p("auto_takeover"))
        self.takeover = False
        self._human_stamp = -1e9
        self.hold = HoldCommand(mode, int(p("action_dim")))
        self.estop = EStopLatch()
        self.dropped = 0
        self._events = OnceLogger(lambda m: self.get_logger().warning(m))
        self.out = self.create_publisher(Float64MultiArray, p("output_topic"), 10)
        self.flag = self.create_publisher(Bool, "~/is_intervention", 10)
        self.policy_echo = self.create_publisher(Float64MultiArray, "~/policy_action", 10)
        self.human_echo = self.create_publisher(Float64MultiArray, "~/human_action", 10)
        self.create_subscription(Float64MultiArray, p("policy_topic"), self._on_policy, 10)
        self.create_subscription(Float64MultiArray, p("human_topic"), self._on_human, 10)
        self.create_subscription(Bool, p("takeover_topic"), self._on_takeover, 10)
        self.create_subscription(Bool, "~/estop", self._on_estop, 10)
        if p("estop_topic"):
            self.create_subscription(Bool, p("estop_topic"), self._on_estop, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(1.0 / float(p("rate_hz")), self._tick)
        self.get_logger().info(
            f"policy {p('policy_topic')} | human {p('human_topic')} -> {p('output_topic')} "
            f"({p('command_interface')} interface, hold: {mode})"
        )

    def human_active(self) -> bool:
        return time.monotonic() - self._human_stamp <= self.timeout

    def intervening(self) -> bool:
        return self.takeover or (self.auto and self.human_active())

    def holding(self) -> bool:
        return self.estop.engaged or (self.takeover and not self.human_active())

    def _on_takeover(self, msg: Bool) -> None:
        if msg.data != self.takeover:
            self.takeover = bool(msg.data)
            self.get_logger().info("human takes over" if self.takeover else "policy back in control")

    def _forward(self, msg: Float64MultiArray, human: bool) -> None:
        if self.estop.engaged:
            self.dropped += 1
            return
        if not self.hold.dim:
            self.hold.dim = len(msg.data)
        self.hold.commanded(np.asarray(msg.data))
        self.out.publish(msg)
        self.flag.publish(Bool(data=human))

    def _on_policy(self, msg: Float64MultiArray) -> None:
        self.policy_echo.publish(msg)
        if not self.intervening():
            self._forward(msg, human=False)

    def _on_human(self, msg: Float64MultiArray) -> None:
        self._human_stamp = time.monotonic()
        self.human_echo.publish(msg)
        self._events.set("silent", False, cleared="human command stream back")
        if self.intervening():
            self._forward(msg, human=True)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and self.estop.trigger("estop"):
            self.get_logger().error(
                "E-STOP engaged: every command path (policy and human) held until ~/reset"
            )
            self._publish_hold()

    def _on_reset(self, request: Any, response: Any) -> Any:
        was = self.estop.reset()
        if was:
            self.get_logger().warning("e-stop reset: forwarding resumes")
        response.success = True
        response.message = "e-stop cleared" if was else "e-stop was not engaged"
        return response

    def _publish_hold(self) -> None:
        value = self.hold.command() if self.hold.dim else None
        if value is not None:
            self.out.publish(Float64MultiArray(data=[float(x) for x in value]))

    def _tick(self) -> None:
        silent = self.takeover and not self.human_active()
        self._events.set("silent", silent, f"human in control but silent for > {self.timeout} s: holding")
        if self.holding():
            self._publish_hold()


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopMuxNode, "teleop_mux_node", args)


if __name__ == "__main__":
    sys.exit(main())
