"""``recorder_node``: episodes from ROS topics into the crash-safe robostack episode store.

Steps are aligned: with a policy running, the recorder records one step per command the policy published, from
its ``~/decision`` message (``decision_topic``): the observation values and stamps that very command was computed
from, and the command itself as ``policy_action``. Camera images are not in that message; they are matched by
their ``header.stamp`` to the stamp the policy used. ``action`` is what was executed: the policy's command, or
the human's latest while ``is_intervention`` (from teleop_mux_node) is true. ``timestamp`` is the observation's
stamp. Without a policy (``record_on: timer``, or ``auto`` when no decision arrived in the last second at
``~/start``), it samples the latest message of every topic at ``rate_hz`` (plain teleoperation).

``~/start`` (std_srvs/Trigger) opens an episode -- the store is created on the first one, with features taken
from the messages then at hand -- ``~/stop`` (std_srvs/SetBool, data = success) commits it and ``~/discard``
(std_srvs/Trigger) drops it. Only committed
episodes are ever visible; a recorder killed mid-episode leaves every earlier episode intact and the store opens
as before (the store's commit protocol). Store attributes keep the control rate, the topic map and the
recorder's parameters.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from robostack.errors import RobostackError
from robostack.ros.safety import OnceLogger
from robostack.ros.spin import run_node
from robostack.ros.topic_map import TopicMap, message_class, stamp_seconds, to_array

PARAMS: dict[str, Any] = {
    "store": "",  # episode store path (created on the first episode)
    "topic_map": "",  # observations to record (policy_node's YAML format)
    "rate_hz": 20.0,
    "action_topic": "/forward_velocity_controller/commands",
    "policy_action_topic": "/teleop_mux_node/policy_action",
    "human_action_topic": "/teleop_mux_node/human_action",
    "intervention_topic": "/teleop_mux_node/is_intervention",
    "decision_topic": "/policy_node/decision",
    "record_on": "auto",  # decision | timer | auto (decision when the policy published one in the last second)
    "task": "",
    "robot": "",
    "source": "real",  # sim | real | intervention ...
    "fsync": False,
}


class RecorderNode(Node):
    def __init__(self, name: str = "recorder_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for k, v in PARAMS.items():
            self.declare_parameter(k, v)
        self.topic_map = TopicMap.load(self.p("topic_map"))
        self._latest: dict[str, np.ndarray] = {}
        self._images: dict[str, deque[tuple[float, np.ndarray]]] = {}
        self._last_decision = -1e9
        self._decision_action: Any = None
        self._events = OnceLogger(lambda m: self.get_logger().warning(m))
        if self.p("record_on") not in ("auto", "decision", "timer"):
            raise RobostackError(f"record_on '{self.p('record_on')}' (choose from auto, decision, timer)")
        self.mode = "timer"
        for src in self.topic_map.observations.values():
            self.create_subscription(
                message_class(src.type), src.topic, lambda m, s=src: self._on_obs(s, m), 10
            )
        for key, topic in (("action", "action_topic"), ("policy_action", "policy_action_topic"),
                           ("human_action", "human_action_topic")):  # fmt: skip
            self.create_subscription(
                Float64MultiArray, self.p(topic), lambda m, k=key: self._on_vec(k, m), 10
            )
        self.create_subscription(Bool, self.p("intervention_topic"), self._on_flag, 10)
        if self.p("decision_topic"):
            self.create_subscription(String, self.p("decision_topic"), self._on_decision, 50)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(SetBool, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        self.writer: Any = None
        self.recording = False
        self.steps = 0
        self.intervened = False
        self._t0 = 0.0
        self.create_timer(1.0 / float(self.p("rate_hz")), self._tick)
        self.get_logger().info(f"recording into {self.p('store')} at {self.p('rate_hz')} Hz on ~/start")

    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    # ------------------------------------------------------------------ inputs
    def _on_obs(self, src: Any, msg: Any) -> None:
        try:
            self._latest[src.key] = to_array(src, msg)
        except RobostackError as exc:
            self._events.set(f"bad:{src.key}", True, f"ignoring message: {exc}")
            return
        if src.type == "image":  # matched by stamp to the policy's decision (a second of frames at 30 Hz)
            self._images.setdefault(src.key, deque(maxlen=32)).append(
                (stamp_seconds(msg), self._latest[src.key])
            )

    def _on_vec(self, key: str, msg: Float64MultiArray) -> None:
        self._latest[key] = np.asarray(msg.data, np.float32)

    def _on_flag(self, msg: Bool) -> None:
        self._latest["is_intervention"] = np.asarray(bool(msg.data))

    # ------------------------------------------------------------------ episodes
    def _features(self) -> dict[str, Any]:
        from robostack.data.schema import FeatureSpec

        feats = {}
        for key in self.topic_map.observations:
            v = self._latest[key]
            feats[key] = FeatureSpec("uint8" if v.dtype == np.uint8 else "float32", tuple(v.shape))
        act = self._latest["action"].shape if "action" in self._latest else self._decision_action.shape
        for key in ("action", "policy_action", "human_action"):
            feats[key] = FeatureSpec("float32", act)
        feats["is_intervention"] = FeatureSpec("bool", ())
        feats["timestamp"] = FeatureSpec("float64", ())
        return feats

    def _open_writer(self) -> None:
        from robostack.data.schema import StoreInfo
        from robostack.data.store import EpisodeWriter
        from robostack.utils.provenance import provenance

        path = Path(self.p("store"))
        if (path / "zarr.json").exists():
            self.writer = EpisodeWriter.open(path, fsync=bool(self.p("fsync")))
            return
        info = StoreInfo(
            control_rate_hz=float(self.p("rate_hz")),
            features=self._features(),
            robot=self.p("robot"),
            tasks=[self.p("task")] if self.p("task") else [],
            provenance=provenance({k: self.p(k) for k in PARAMS}),
            extra={"topic_map": {k: vars(v) for k, v in self.topic_map.observations.items()}},
        )
        self.writer = EpisodeWriter.create(path, info, fsync=bool(self.p("fsync")))

    def _on_start(self, request: Any, response: Any) -> Any:
        mode = self.p("record_on")
        if mode == "auto":
            mode = "decision" if time.monotonic() - self._last_decision < 1.0 else "timer"
        missing = [k for k in self.topic_map.observations if k not in self._latest]
        if mode == "timer" and "action" not in self._latest:
            missing.append("action")
        if mode == "decision" and self._decision_action is None:
            missing.append(f"decisions on {self.p('decision_topic')}")
        if self.recording:
            response.success, response.message = False, "already recording"
        elif missing:
            response.success, response.message = False, f"no messages yet for {', '.join(missing)}"
        else:
            try:
                if self.writer is None:
                    self._open_writer()
                self.writer.begin_episode()
            except RobostackError as exc:
                response.success, response.message = False, str(exc)
                self.get_logger().error(f"cannot start an episode: {exc}")
                return response
            self.recording, self.steps, self.intervened = True, 0, False
            self.mode = mode
            self._t0 = time.monotonic()
            response.success = True
            response.message = f"episode {self.writer.n_episodes} started (one step per {mode})"
        return response

    def _on_stop(self, request: Any, response: Any) -> Any:
        if not self.recording:
            response.success, response.message = False, "not recording"
            return response
        self.recording = False
        if self.steps == 0:
            self.writer.discard_episode()
            response.success, response.message = False, "episode had no steps: discarded"
            return response
        index = self.writer.end_episode(
            success=bool(request.data),
            source="intervention" if self.intervened else self.p("source"),
            task=self.p("task"),
            quality="human" if self.intervened else "policy",
        )
        rate = self.steps / max(time.monotonic() - self._t0, 1e-9)
        response.success = True
        response.message = f"episode {index} committed: {self.steps} steps at {rate:.1f} Hz"
        self.get_logger().info(response.message)
        return response

    def _on_discard(self, request: Any, response: Any) -> Any:
        """Drop the open episode (the operator's discard): nothing of it is committed."""
        if not self.recording:
            response.success, response.message = False, "not recording"
            return response
        self.recording = False
        self.writer.discard_episode()
        response.success, response.message = True, f"episode discarded ({self.steps} steps)"
        self.get_logger().info(response.message)
        return response

    def _on_decision(self, msg: String) -> None:
        self._last_decision = time.monotonic()
        try:
            d = json.loads(msg.data)
            action = np.asarray(d["action"], np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            self._events.set("decision", True, f"ignoring a malformed decision message ({exc})")
            return
        self._decision_action = action
        if self.recording and self.mode == "decision":
            self._record(self._decision_step(d, action))

    def _decision_step(self, d: dict[str, Any], action: np.ndarray) -> dict[str, Any]:
        step: dict[str, Any] = {}
        for key, src in self.topic_map.observations.items():
            if key in d["obs"]:
                step[key] = np.asarray(d["obs"][key], np.float32).reshape(self._latest[key].shape)
            elif src.type == "image" and key in d.get("obs_stamps", {}):
                step[key] = self._image_at(key, float(d["obs_stamps"][key]))
            else:  # a topic the policy does not observe: its latest message
                step[key] = self._latest[key]
        flag = bool(self._latest.get("is_intervention", np.asarray(False)))
        human = self._latest.get("human_action", np.zeros_like(action))
        step["policy_action"] = action
        step["action"] = human if flag else action
        step["human_action"] = human if flag else np.zeros_like(action)
        step["is_intervention"] = np.asarray(flag)
        step["timestamp"] = np.asarray(float(d["stamp"]))
        return step

    def _image_at(self, key: str, stamp: float) -> np.ndarray:
        frames = self._images.get(key, ())
        for t, img in reversed(frames):
            if abs(t - stamp) < 1e-6:
                self._events.set(f"unmatched:{key}", False, cleared=f"'{key}' frames match decisions again")
                return img
        self._events.set(
            f"unmatched:{key}", True, f"'{key}': no frame with the decision's stamp; recording the latest"
        )
        return self._latest[key]

    def _tick(self) -> None:
        if not self.recording or self.mode != "timer":
            return
        zeros = np.zeros_like(self._latest["action"])
        flag = bool(self._latest.get("is_intervention", np.asarray(False)))
        step = {k: self._latest[k] for k in self.topic_map.observations}
        step["action"] = self._latest["action"]
        step["policy_action"] = self._latest.get("policy_action", zeros)
        step["human_action"] = self._latest.get("human_action", zeros) if flag else zeros
        step["is_intervention"] = np.asarray(flag)
        step["timestamp"] = np.asarray(time.time())
        self._record(step)

    def _record(self, step: dict[str, Any]) -> None:
        flag = bool(step["is_intervention"])
        try:
            self.writer.add_step(step)
        except RobostackError as exc:
            self._events.set("step", True, f"step not recorded: {exc}")
            return
        self.steps += 1
        self.intervened |= flag


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, "recorder_node", args)


if __name__ == "__main__":
    sys.exit(main())
