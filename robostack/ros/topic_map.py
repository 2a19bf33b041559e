"""Which ROS topic feeds which observation key, and how a message becomes the array the policy expects.

A topic map is YAML (a file named by the node's ``topic_map`` parameter)::

    observations:
      obs/state:                      # policy observation key
        topic: /robot/joint_states
        type: joint_state             # sensor_msgs/JointState, picked by joint NAME, never by index
        joints: [slide_x, slide_y]
        fields: [position, velocity]  # concatenated: x, y, vx, vy
      obs/object: {topic: /robot/object_state, type: float32_array}   # std_msgs/Float32MultiArray
      obs/ee_pose: {topic: /robot/ee_pose, type: pose}                # geometry_msgs/PoseStamped -> xyz + quat
      obs/image_front: {topic: /front/image_raw, type: image}         # sensor_msgs/Image rgb8 -> HxWx3 uint8
    command:
      type: float64_array             # std_msgs/Float64MultiArray (ros2_control forward command controller)
      topic: /forward_command_controller/commands
      interface: velocity             # velocity | effort | position: decides what a hold publishes
      # or: {type: joint_trajectory, topic: /joint_trajectory_controller/joint_trajectory, joints: [...]}

Staleness: stamped types (joint_state, pose, image) are aged by their ``header.stamp``; ``staleness: arrival``
on an observation ages it by arrival instead (for a driver that leaves stamps at zero). float32_array has no
header, so it is always aged by arrival. The command's ``interface`` defaults to ``velocity`` for float64_array
and ``position`` for joint_trajectory.

Parsing is pure Python (tested without ROS); ``to_array`` takes a message object of the declared type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robostack.errors import RobostackError, SpecError
from robostack.ros.safety import COMMAND_INTERFACES

OBS_TYPES = ("joint_state", "float32_array", "pose", "image")
STAMPED_TYPES = ("joint_state", "pose", "image")
COMMAND_TYPES = ("float64_array", "joint_trajectory")
JOINT_FIELDS = ("position", "velocity", "effort")


@dataclass
class ObsSource:
    key: str
    topic: str
    type: str
    joints: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=lambda: ["position"])
    staleness: str = ""
    """``stamp`` (default for stamped types) or ``arrival``."""

    @property
    def stamped(self) -> bool:
        return self.type in STAMPED_TYPES and self.staleness != "arrival"

    def size(self) -> int | None:
        if self.type == "joint_state":
            return len(self.joints) * len(self.fields)
        if self.type == "pose":
            return 7
        return None


@dataclass
class CommandSink:
    type: str = "float64_array"
    topic: str = "/forward_command_controller/commands"
    joints: list[str] = field(default_factory=list)
    interface: str = ""
    """velocity | effort | position; empty: velocity for float64_array, position for joint_trajectory."""

    def __post_init__(self) -> None:
        if not self.interface:
            self.interface = "position" if self.type == "joint_trajectory" else "velocity"


@dataclass
class TopicMap:
    observations: dict[str, ObsSource]
    command: CommandSink

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "topic map") -> TopicMap:
        if not isinstance(d, dict) or "observations" not in d:
            raise RobostackError(f"{where}: needs an 'observations' mapping")
        obs = {}
        for key, src in (d["observations"] or {}).items():
            if not isinstance(src, dict) or "topic" not in src or "type" not in src:
                raise RobostackError(f"{where}: observation '{key}' needs 'topic' and 'type'")
            if src["type"] not in OBS_TYPES:
                raise RobostackError(
                    f"{where}: observation '{key}' has type '{src['type']}' (choose from {', '.join(OBS_TYPES)})"
                )
            unknown = set(src) - {"topic", "type", "joints", "fields", "staleness"}
            if unknown:
                raise RobostackError(f"{where}: observation '{key}' has unknown field(s) {sorted(unknown)}")
            s = ObsSource(key, src["topic"], src["type"], list(src.get("joints", [])),
                          list(src.get("fields", ["position"])), str(src.get("staleness", "")))  # fmt: skip
            if s.staleness not in ("", "stamp", "arrival"):
                raise RobostackError(
                    f"{where}: observation '{key}' staleness '{s.staleness}' (stamp or arrival)"
                )
            if s.staleness == "stamp" and s.type not in STAMPED_TYPES:
                raise RobostackError(
                    f"{where}: observation '{key}' ({s.type}) has no header stamp to age it by"
                )
            if s.type == "joint_state" and not s.joints:
                raise RobostackError(
                    f"{where}: observation '{key}' (joint_state) must list its joints by name"
                )
            bad = [f for f in s.fields if f not in JOINT_FIELDS]
            if bad:
                raise RobostackError(f"{where}: observation '{key}' has unknown joint field(s) {bad}")
            obs[key] = s
        cmd = d.get("command") or {}
        unknown = set(cmd) - {"type", "topic", "joints", "interface"}
        if unknown:
            raise RobostackError(f"{where}: command has unknown field(s) {sorted(unknown)}")
        sink = CommandSink(**cmd)
        if sink.type not in COMMAND_TYPES:
            raise RobostackError(
                f"{where}: command type '{sink.type}' (choose from {', '.join(COMMAND_TYPES)})"
            )
        if sink.interface not in COMMAND_INTERFACES:
            raise RobostackError(
                f"{where}: command interface '{sink.interface}' (choose from {', '.join(COMMAND_INTERFACES)})"
            )
        if sink.type == "joint_trajectory" and not sink.joints:
            raise RobostackError(f"{where}: a joint_trajectory command must list its joints")
        return cls(obs, sink)

    @classmethod
    def load(cls, path: str | Path) -> TopicMap:
        p = Path(path)
        if not p.is_file():
            raise RobostackError(f"{p}: no such topic map file")
        return cls.from_dict(yaml.safe_load(p.read_text()), str(p))

    def check_against(self, spec: Any) -> list[str]:
        """Mismatches between this map and a policy spec (keys, sizes, action joints); empty when it fits."""
        problems = []
        for key, fs in spec.obs.items():
            if key not in self.observations:
                problems.append(f"the model observes '{key}' but the topic map does not provide it")
                continue
            src = self.observations[key]
            size = src.size()
            want = int(np.prod(fs.shape)) if fs.shape else 1
            if fs.dtype == "uint8" and src.type != "image":
                problems.append(f"'{key}' is a camera image in the model but '{src.type}' in the topic map")
            elif size is not None and size != want:
                problems.append(f"'{key}' needs {want} values, the topic map gives {size} ({src.type})")
        n_act = int(np.prod(spec.action.shape))
        if self.command.type == "joint_trajectory" and len(self.command.joints) != n_act:
            problems.append(
                f"the model outputs {n_act} actions, the command lists {len(self.command.joints)} joints"
            )
        return problems


def message_class(kind: str) -> Any:
    """The ROS message class of an observation type (imported here: parsing a map needs no ROS)."""
    if kind == "joint_state":
        from sensor_msgs.msg import JointState

        return JointState
    if kind == "pose":
        from geometry_msgs.msg import PoseStamped

        return PoseStamped
    if kind == "image":
        from sensor_msgs.msg import Image

        return Image
    from std_msgs.msg import Float32MultiArray

    return Float32MultiArray


def stamp_seconds(msg: Any) -> float:
    """``header.stamp`` of a stamped message in seconds (0.0 when the driver left it unset)."""
    st = msg.header.stamp
    return st.sec + st.nanosec * 1e-9


def to_array(src: ObsSource, msg: Any) -> np.ndarray:
    """Message of the declared type -> observation array (raises SpecError naming the key on a bad message)."""
    if src.type == "float32_array":
        return np.asarray(msg.data, np.float32)
    if src.type == "joint_state":
        index = {n: i for i, n in enumerate(msg.name)}
        missing = [j for j in src.joints if j not in index]
        if missing:
            raise SpecError(f"'{src.key}': joint(s) {missing} not in {src.topic} (has {list(msg.name)[:8]})")
        parts = []
        for f in src.fields:
            values = getattr(msg, f)
            if len(values) != len(msg.name):
                raise SpecError(
                    f"'{src.key}': {src.topic} has {len(values)} {f} values for {len(msg.name)} joints"
                )
            parts.append([values[index[j]] for j in src.joints])
        return np.asarray(parts, np.float32).reshape(-1)
    if src.type == "pose":
        p, q = msg.pose.position, msg.pose.orientation
        return np.asarray([p.x, p.y, p.z, q.x, q.y, q.z, q.w], np.float32)
    if src.type == "image":
        if msg.encoding not in ("rgb8", "bgr8"):
            raise SpecError(f"'{src.key}': {src.topic} encoding '{msg.encoding}', expected rgb8 or bgr8")
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
        img = img.reshape(msg.height, msg.width, 3)
        return img[..., ::-1].copy() if msg.encoding == "bgr8" else img
    raise SpecError(f"'{src.key}': unknown observation type '{src.type}'")
