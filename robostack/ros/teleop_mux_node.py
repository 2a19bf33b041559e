"""``teleop_mux_node``: the policy drives unless a human takes over; both actions and the switch are published.

Inputs: the policy's commands (``policy_topic``) and the human's (``human_topic``), both std_msgs/Float64MultiArray,
and a takeover switch (``takeover_topic``, std_msgs/Bool: a button or key; true = human, false = policy). With
``auto_takeover`` a live human stream (a message within ``human_timeout_s``) takes over without the button.
Output: the selected command on ``output_topic``; ``~/is_intervention`` (std_msgs/Bool) with every forwarded
command; ``~/policy_action`` and ``~/human_action`` re-published so a recorder stores both. While the human is in
control but silent for longer than ``human_timeout_s``, nothing is forwarded (hold) and that is logged once.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rclpy.node import Node
from std_msgs.msg import Bool, Float64MultiArray

from robostack.ros.safety import OnceLogger
from robostack.ros.spin import run_node

PARAMS: dict[str, Any] = {
    "policy_topic": "/policy/commands",
    "human_topic": "/teleop/commands",
    "takeover_topic": "/teleop/takeover",
    "output_topic": "/forward_velocity_controller/commands",
    "human_timeout_s": 0.5,
    "auto_takeover": False,
}


class TeleopMuxNode(Node):
    def __init__(self, name: str = "teleop_mux_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for k, v in PARAMS.items():
            self.declare_parameter(k, v)
        p = lambda n: self.get_parameter(n).value  # noqa: E731
        self.timeout = float(p("human_timeout_s"))
        self.auto = bool(p("auto_takeover"))
        self.takeover = False
        self._human_stamp = -1e9
        self._events = OnceLogger(lambda m: self.get_logger().warning(m))
        self.out = self.create_publisher(Float64MultiArray, p("output_topic"), 10)
        self.flag = self.create_publisher(Bool, "~/is_intervention", 10)
        self.policy_echo = self.create_publisher(Float64MultiArray, "~/policy_action", 10)
        self.human_echo = self.create_publisher(Float64MultiArray, "~/human_action", 10)
        self.create_subscription(Float64MultiArray, p("policy_topic"), self._on_policy, 10)
        self.create_subscription(Float64MultiArray, p("human_topic"), self._on_human, 10)
        self.create_subscription(Bool, p("takeover_topic"), self._on_takeover, 10)
        self.create_timer(0.05, self.check_silence)
        self.get_logger().info(
            f"policy {p('policy_topic')} | human {p('human_topic')} -> {p('output_topic')}"
        )

    def human_active(self) -> bool:
        return time.monotonic() - self._human_stamp <= self.timeout

    def intervening(self) -> bool:
        return self.takeover or (self.auto and self.human_active())

    def _on_takeover(self, msg: Bool) -> None:
        if msg.data != self.takeover:
            self.takeover = bool(msg.data)
            self.get_logger().info("human takes over" if self.takeover else "policy back in control")

    def _on_policy(self, msg: Float64MultiArray) -> None:
        self.policy_echo.publish(msg)
        if not self.intervening():
            self.out.publish(msg)
            self.flag.publish(Bool(data=False))

    def _on_human(self, msg: Float64MultiArray) -> None:
        self._human_stamp = time.monotonic()
        self.human_echo.publish(msg)
        self._events.set("silent", False, cleared="human command stream back")
        if self.intervening():
            self.out.publish(msg)
            self.flag.publish(Bool(data=True))

    def check_silence(self) -> None:
        silent = self.takeover and not self.human_active()
        self._events.set("silent", silent, f"human in control but silent for > {self.timeout} s: holding")


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopMuxNode, "teleop_mux_node", args)


if __name__ == "__main__":
    sys.exit(main())
