"""``policy_node``: a lifecycle node running an exported policy in the control loop, with the safety a robot needs.

configure: load the model through ``robostack.runtime``, check its observation/action spec against the topic map,
           warm up; a mismatch fails the transition with one clear log line (the node never activates).
           cleanup (or shutdown) destroys everything configure created, so configure -> cleanup -> configure
           leaves one subscription per topic and one command publisher.
activate:  a timer at the model's control rate (or ``rate_hz``): latest observations -> ``select_action`` ->
           guard -> command (``std_msgs/Float64MultiArray``, or a ``trajectory_msgs/JointTrajectory`` chunk).
Safety, checked every period before anything is commanded; every reaction *holds*, and a hold is a command:
``hold: auto`` publishes zeros every period on a velocity/effort interface (a forward command controller keeps
applying the last command it got: publishing nothing would keep the arm moving), the last commanded position on
a position interface, nothing only with ``hold: silent`` (for controllers with their own command timeout).
- stale-observation watchdog: a required observation older than ``max_obs_age_s`` -> hold, reset the policy's
  history; resume only when every topic is fresh again. Stamped types are aged by ``header.stamp`` (a driver
  republishing an old reading stays old), within ``max_clock_skew_s``; unstamped types by arrival;
- NaN/Inf guard on the model output -> hold; clip to the action bounds and to ``max_delta_per_step``;
- latched e-stop: ``~/estop`` or ``estop_topic`` (std_msgs/Bool, true) engages it and holds at once; only the
  ``~/reset`` service (std_srvs/Trigger) clears it. Each reaction is logged once when it starts and once when it
  clears. Deactivating publishes one hold.
With every command, ``~/decision`` (std_msgs/String, JSON) says what it was computed from: the stamps and values
of the observations used and the action, so a recorder stores exactly aligned (observation, action) pairs.
Health on ``~/status`` (std_msgs/String, JSON) once per second: achieved rate, timer period error, inference
latency, observation-stamp-to-command and tick-to-command latency (p50/p99), watchdog and e-stop state, counts.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from robostack.errors import RobostackError
from robostack.ros.safety import ActionGuard, EStopLatch, HoldCommand, OnceLogger, StaleWatchdog, resolve_hold
from robostack.ros.spin import run_node
from robostack.ros.topic_map import TopicMap, message_class, stamp_seconds, to_array

PARAMS: dict[str, Any] = {
    "model": "",  # exported model.onnx
    "topic_map": "",  # YAML: observation key -> topic/type, command topic/type
    "device": "cpu",  # cpu | cuda | auto
    "threads": 1,
    "rate_hz": 0.0,  # 0: the model's control rate
    "max_obs_age_s": 0.25,
    "max_clock_skew_s": 0.05,  # tolerated offset between a driver's stamps and this node's clock
    "hold": "auto",  # auto | zero | last_position | silent: what is commanded while holding
    "estop_topic": "/estop",  # a shared e-stop (std_msgs/Bool) besides ~/estop; empty: ~/estop only
    "max_delta_per_step": 0.0,  # 0: no limit on the change between consecutive commands
    "autostart": False,  # configure + activate at start-up (no lifecycle manager needed)
    "reset_topic": "",  # std_msgs/UInt32 announcing a new episode: clears the history and the action queue
    "n_action_steps": 0,  # actions executed per chunk; 0: the model's own
}


def _pct(values: Any) -> list[float]:
    a = np.asarray(list(values), float)
    return (
        [round(float(np.percentile(a, 50)), 4), round(float(np.percentile(a, 99)), 4)]
        if a.size
        else [0.0, 0.0]
    )


class PolicyNode(LifecycleNode):
    def __init__(self, name: str = "policy_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for k, v in PARAMS.items():
            self.declare_parameter(k, v)
        self.policy: Any = None
        self.timer = None
        self._subs: list[Any] = []
        self._latest: dict[str, np.ndarray] = {}
        self._events = OnceLogger(lambda m: self.get_logger().warning(m))
        self.estop = EStopLatch()
        self._stats: dict[str, deque[float]] = {
            k: deque(maxlen=2000) for k in ("period", "infer", "o2c", "tick2c")
        }
        self._last_tick = 0.0
        self._counts = {"commands": 0, "held": 0, "hold_commands": 0}
        self._obs_time: dict[str, float] = {}
        self.cmd_pub: Any = None
        self.decision_pub: Any = None
        self.hold: HoldCommand | None = None
        self._seq = 0
        self._estop_sub = self.create_subscription(Bool, "~/estop", self._on_estop, 10)
        if self.p("estop_topic"):
            self.create_subscription(Bool, self.p("estop_topic"), self._on_estop, 10)
        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)
        self._status_pub = self.create_publisher(String, "~/status", 10)
        self._status_timer = self.create_timer(1.0, self._publish_status)
        if self.p("reset_topic"):
            from std_msgs.msg import UInt32

            self.create_subscription(UInt32, self.p("reset_topic"), self._on_episode_start, 10)
        if self.get_parameter("autostart").value:
            self.create_timer(0.0, self._autostart_once)

    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _autostart_once(self) -> None:
        for t in list(self.timers):  # one-shot: drop the zero-period timer that called us
            if t.timer_period_ns == 0:
                self.destroy_timer(t)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from robostack.runtime import load

        try:
            self.topic_map = TopicMap.load(self.p("topic_map"))
            self.policy = load(self.p("model"), device=self.p("device"), threads=int(self.p("threads")))
            if int(self.p("n_action_steps")):
                self.policy.set_n_action_steps(int(self.p("n_action_steps")))
            problems = self.topic_map.check_against(self.policy.spec)
            if problems:
                raise RobostackError(f"model spec does not match the topic map: {problems[0]}")
            try:
                hold = resolve_hold(str(self.p("hold")), self.topic_map.command.interface)
            except ValueError as exc:
                raise RobostackError(str(exc)) from None
        except RobostackError as exc:
            self.policy = None
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        spec = self.policy.spec
        self.rate_hz = float(self.p("rate_hz")) or spec.control_rate_hz
        self.hold = HoldCommand(hold, int(np.prod(spec.action.shape)))
        self.watchdog = StaleWatchdog(
            list(spec.obs), float(self.p("max_obs_age_s")), float(self.p("max_clock_skew_s"))
        )
        delta = float(self.p("max_delta_per_step"))
        self.guard = ActionGuard(np.asarray(spec.action_low), np.asarray(spec.action_high), delta or None)
        for key in spec.obs:
            src = self.topic_map.observations[key]
            self._subs.append(
                self.create_subscription(
                    message_class(src.type), src.topic, lambda msg, s=src: self._on_obs(s, msg), 10
                )
            )
        cmd = self.topic_map.command
        if cmd.type == "joint_trajectory":
            from trajectory_msgs.msg import JointTrajectory

            self.cmd_pub = self.create_publisher(JointTrajectory, cmd.topic, 10)
        else:
            self.cmd_pub = self.create_publisher(Float64MultiArray, cmd.topic, 10)
        self.decision_pub = self.create_publisher(String, "~/decision", 10)
        self.get_logger().info(
            f"configured: {self.p('model')} ({self.policy.backend}), {len(spec.obs)} observation topics, "
            f"commands on {cmd.topic} ({cmd.interface} interface, hold: {hold}) at {self.rate_hz:g} Hz"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.policy.reset()
        self.guard.reset()
        self._last_tick = 0.0
        self.timer = self.create_timer(1.0 / self.rate_hz, self._tick)
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None
        self._publish_hold()  # the controller must not keep applying the last command of an inactive policy
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None
            self._publish_hold()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Destroy what on_configure created (subscriptions, publishers, the policy)."""
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs.clear()
        for pub in (self.cmd_pub, self.decision_pub):
            if pub is not None:
                self.destroy_publisher(pub)
        self.cmd_pub = self.decision_pub = None
        self.policy = None
        self.hold = None
        self._latest.clear()
        self._obs_time.clear()

    # ------------------------------------------------------------------ callbacks
    def now(self) -> float:
        """This node's clock (ROS time, seconds): the clock stamps are compared against."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_obs(self, src: Any, msg: Any) -> None:
        try:
            self._latest[src.key] = to_array(src, msg)
        except RobostackError as exc:
            self._events.set(f"bad:{src.key}", True, f"ignoring message: {exc}")
            return
        self._events.set(f"bad:{src.key}", False)
        t = stamp_seconds(msg) if src.stamped else self.now()
        self._events.set(
            f"unstamped:{src.key}", src.stamped and t == 0.0,
            f"{src.topic} has no header.stamp: '{src.key}' counts as stale (stamp it in the driver, or set "
            "'staleness: arrival' for it in the topic map)",
        )  # fmt: skip
        self._obs_time[src.key] = t
        self.watchdog.feed(src.key, t, stamped=src.stamped)

    def _on_episode_start(self, msg: Any) -> None:
        if self.policy is not None:
            self.policy.reset()
            self.guard.reset()
            self._latest.clear()  # wait for the new episode's first observations
            self.watchdog.reset()

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and self.estop.trigger("~/estop"):
            self.get_logger().error("E-STOP engaged: holding until ~/reset")
            if self.timer is not None:  # hold now, not at the next tick
                self._hold()

    def _on_reset(self, request: Any, response: Any) -> Any:
        was = self.estop.reset()
        if was:
            if self.policy is not None:  # start from fresh history and no rate-limit anchor
                self.policy.reset()
                self.guard.reset()
            self.get_logger().warning("e-stop reset: commanding resumes")
        response.success = True
        response.message = "e-stop cleared" if was else "e-stop was not engaged"
        return response

    def _hold(self) -> None:
        self._counts["held"] += 1
        self._publish_hold()

    def _publish_hold(self) -> None:
        if self.hold is None or self.cmd_pub is None:
            return
        value = self.hold.command()
        if value is None:
            return
        if self.topic_map.command.type == "float64_array":
            self.cmd_pub.publish(Float64MultiArray(data=[float(x) for x in value]))
        else:
            self.cmd_pub.publish(self._trajectory([value]))
        self._counts["hold_commands"] += 1

    def _tick(self) -> None:
        t0 = time.monotonic()
        if self._last_tick:
            self._stats["period"].append(t0 - self._last_tick)
        self._last_tick = t0
        if self.estop.engaged:
            return self._hold()
        stale = self.watchdog.stale(self.now())
        self._events.set(
            "stale", bool(stale),
            f"watchdog: no fresh data on {', '.join(stale)} (limit {self.watchdog.max_age_s} s): holding",
            "watchdog: all observations fresh again: resuming",
        )  # fmt: skip
        if stale:
            self.policy.reset()  # the history is out of date; start over from the first fresh frame
            self.guard.reset()
            return self._hold()
        obs = {k: self._latest[k] for k in self.policy.spec.obs}
        planning = self.policy.will_plan
        t_inf = time.monotonic()
        try:
            action = self.policy.select_action(obs)
        except RobostackError as exc:
            self._events.set("obs", True, f"observation refused: {exc}: holding")
            return self._hold()
        self._events.set("obs", False, cleared="observations accepted again")
        infer = time.monotonic() - t_inf
        if planning:
            self._stats["infer"].append(infer)
        result = self.guard(action)
        self._events.set(
            "guard", result.action is None, f"{result.refused}: holding", "policy output valid again"
        )
        if result.action is None:
            self.policy.reset()
            return self._hold()
        self._publish(result.action)
        published = self.now()
        self._stats["tick2c"].append(time.monotonic() - t0)
        used = {k: self._obs_time[k] for k in self.policy.spec.obs if k in self._obs_time}
        # the observation's own time: the newest header stamp when any input has one, else the newest arrival
        stamped = [t for k, t in used.items() if self.topic_map.observations[k].stamped]
        newest = max(stamped or used.values() or [published])
        self._stats["o2c"].append(published - newest)
        self._counts["commands"] += 1
        self._publish_decision(obs, result.action, used, newest, planning)

    def _publish_decision(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        used: dict[str, float],
        newest: float,
        planned: bool,
    ) -> None:
        self._seq += 1
        vectors = {k: np.ravel(v).tolist() for k, v in obs.items() if v.dtype != np.uint8}
        self.decision_pub.publish(
            String(
                data=json.dumps(
                    {
                        "seq": self._seq,
                        "stamp": newest,
                        "obs_stamps": used,
                        "obs": vectors,
                        "action": [float(x) for x in action],
                        "planned": bool(planned),
                    }
                )
            )
        )

    def _trajectory(self, points: list[np.ndarray]) -> Any:
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        msg = JointTrajectory(joint_names=list(self.topic_map.command.joints))
        for i, a in enumerate(points):
            t = (i + 1) / self.rate_hz
            msg.points.append(
                JointTrajectoryPoint(
                    positions=[float(x) for x in a],
                    time_from_start=Duration(sec=int(t), nanosec=int(t % 1 * 1e9)),
                )
            )
        return msg

    def _publish(self, action: np.ndarray) -> None:
        cmd = self.topic_map.command
        self.hold.commanded(action)
        if cmd.type == "float64_array":
            self.cmd_pub.publish(Float64MultiArray(data=[float(x) for x in action]))
            return
        points = [action]
        for a in self.policy.pending_actions():  # the rest of the chunk, guarded point by point
            g = self.guard(a)
            if g.action is None:
                break
            points.append(g.action)
        self.guard.reset(action)  # the next step is limited against what executes next, not the chunk's tail
        self.cmd_pub.publish(self._trajectory(points))

    def status(self) -> dict[str, Any]:
        periods = self._stats["period"]
        return {
            "state": "active" if self.timer is not None else "inactive",
            "rate_hz": round(1.0 / float(np.mean(periods)), 2) if periods else 0.0,
            "target_rate_hz": getattr(self, "rate_hz", 0.0),
            "period_error_ms_p50_p99": _pct(abs(x - 1.0 / self.rate_hz) * 1e3 for x in periods)
            if periods
            else [],
            "inference_ms_p50_p99": _pct(x * 1e3 for x in self._stats["infer"]),
            # from the newest used observation's stamp (arrival for unstamped topics) to publishing the command:
            # includes the wait for the timer tick, inference and the guard, not the transport to the controller
            "obs_to_command_ms_p50_p99": _pct(x * 1e3 for x in self._stats["o2c"]),
            # from the timer tick to publishing: inference and the guard only
            "tick_to_command_ms_p50_p99": _pct(x * 1e3 for x in self._stats["tick2c"]),
            "watchdog_stale": self.watchdog.stale(self.now()) if self.timer is not None else [],
            "estop": self.estop.engaged,
            "hold": self.hold.mode if self.hold is not None else "",
            "commands": self._counts["commands"],
            "held": self._counts["held"],
            "hold_commands": self._counts["hold_commands"],
        }

    def _publish_status(self) -> None:
        self._status_pub.publish(String(data=json.dumps(self.status())))


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, "policy_node", args)


if __name__ == "__main__":
    sys.exit(main())
