"""``sim_robot_node``: a ``robostack.sim`` task behaving like a robot on ROS 2, so deployment runs in closed loop
with no hardware.

At the task's control rate it publishes what a robot driver would: ``/<prefix>/joint_states``
(sensor_msgs/JointState; for ``state`` vectors laid out as positions then velocities, named by the task's feature
names) and every observation key as ``/<prefix>/<key>`` (std_msgs/Float32MultiArray). It applies the latest
command from ``command_topic`` (std_msgs/Float64MultiArray) for up to ``command_timeout_s``, then a zero action
(the way a velocity controller's command timeout behaves). When an episode ends it publishes ``~/episode`` (std_msgs/String, JSON:
seed, success, steps, return) and, with ``auto_reset``, starts the next seed after announcing it on
``/<prefix>/episode_start`` (std_msgs/UInt32) so the policy node can clear its history; ``~/reset``
(std_srvs/Trigger) restarts the current seed sequence on demand. ``~/step`` (std_msgs/Header) names every published
observation: its stamp is the joint state's ``header.stamp`` and its frame_id ``"<seed>:<step>"``, so a recording can
be checked step by step against what the robot published.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, Header, String, UInt32
from std_srvs.srv import Trigger

from robostack.ros.spin import run_node

PARAMS: dict[str, Any] = {
    "task": "push",
    "prefix": "/robot",
    "command_topic": "/forward_velocity_controller/commands",
    "seed": 100_000,  # first episode's seed; each next episode uses the next one
    "episodes": 0,  # 0: run forever
    "auto_reset": True,
    "rate_hz": 0.0,  # 0: the task's control rate
    "start_delay_s": 0.0,  # wait before the first episode (lets subscribers connect)
    "command_timeout_s": 0.2,  # the last command stays applied this long (a controller's command timeout)
}


class SimRobotNode(Node):
    def __init__(self, name: str = "sim_robot_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for k, v in PARAMS.items():
            self.declare_parameter(k, v)
        os.environ.setdefault("MUJOCO_GL", "egl")
        from robostack.sim.registry import make_task

        self.task = make_task(self.p("task"))
        spec = self.task.task_spec
        self.spec = spec
        prefix = self.p("prefix").rstrip("/")
        self.obs_pubs = {k: self.create_publisher(Float32MultiArray, f"{prefix}/{k}", 10) for k in spec.obs}
        self.js_pub = self.create_publisher(JointState, f"{prefix}/joint_states", 10)
        self.start_pub = self.create_publisher(UInt32, f"{prefix}/episode_start", 10)
        self.episode_pub = self.create_publisher(String, "~/episode", 10)
        self.step_pub = self.create_publisher(Header, "~/step", 50)
        self.create_subscription(Float64MultiArray, self.p("command_topic"), self._on_command, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.action_dim = int(np.prod(spec.action.shape))
        self._command: np.ndarray | None = None
        self._command_t = 0.0
        self._command_timeout = float(self.p("command_timeout_s"))
        self.seed = int(self.p("seed"))
        self.done_episodes = 0
        self.obs: dict[str, np.ndarray] | None = None
        rate = float(self.p("rate_hz")) or spec.control_rate_hz
        self._delay_ticks = int(float(self.p("start_delay_s")) * rate)
        self.timer = self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(
            f"sim robot '{spec.name}' at {rate:g} Hz, commands from {self.p('command_topic')}"
        )

    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    # ------------------------------------------------------------------ episode control
    def _start(self) -> None:
        self.obs, _ = self.task.reset(seed=self.seed)
        self.steps, self.ret = 0, 0.0
        self._command = None
        self.start_pub.publish(UInt32(data=self.seed))
        self._publish_obs()

    def _on_reset(self, request: Any, response: Any) -> Any:
        self.seed = int(self.p("seed"))
        self.done_episodes = 0
        self._start()
        response.success, response.message = True, f"episode restarted with seed {self.seed}"
        return response

    def _on_command(self, msg: Float64MultiArray) -> None:
        a = np.asarray(msg.data, np.float32)
        if a.shape != (self.action_dim,) or not np.isfinite(a).all():
            self.get_logger().warning(f"ignoring command of shape {a.shape} (or non-finite)", once=True)
            return
        self._command = a
        self._command_t = time.monotonic()

    def _tick(self) -> None:
        if self._delay_ticks > 0:
            self._delay_ticks -= 1
            return
        if self.obs is None:
            episodes = int(self.p("episodes"))
            if episodes and self.done_episodes >= episodes:
                return
            self._start()
            return
        fresh = self._command is not None and time.monotonic() - self._command_t <= self._command_timeout
        action = self._command if fresh else np.zeros(self.action_dim, np.float32)
        self.obs, reward, terminated, truncated, info = self.task.step(action)
        self.steps += 1
        self.ret += float(reward)
        success = bool(info.get("success", terminated))
        truncated = truncated or self.steps >= self.spec.max_steps  # the evaluator's limit, enforced here too
        if terminated or truncated:
            report = {"seed": self.seed, "success": success, "steps": self.steps, "return": self.ret}
            self.episode_pub.publish(String(data=json.dumps(report)))
            self.get_logger().info(f"episode done: {report}")
            self.done_episodes += 1
            self.seed += 1
            self.obs = None
            if not self.p("auto_reset"):
                self.timer.cancel()
            return
        self._publish_obs()

    def _publish_obs(self) -> None:
        assert self.obs is not None
        stamp = self.get_clock().now().to_msg()
        for k, pub in self.obs_pubs.items():
            pub.publish(Float32MultiArray(data=[float(x) for x in np.ravel(self.obs[k])]))
        state = np.ravel(self.obs.get("state", np.zeros(0)))
        names = list(self.spec.obs["state"].names) if "state" in self.spec.obs else []
        if state.size and state.size % 2 == 0 and len(names) == state.size:
            n = state.size // 2  # positions then velocities (push: x, y, vx, vy)
            msg = JointState(name=names[:n], position=state[:n].tolist(), velocity=state[n:].tolist())
            msg.header.stamp = stamp
            self.js_pub.publish(msg)
        self.step_pub.publish(Header(stamp=stamp, frame_id=f"{self.seed}:{self.steps}"))


def main(args: list[str] | None = None) -> int:
    return run_node(SimRobotNode, "sim_robot_node", args)


if __name__ == "__main__":
    sys.exit(main())
