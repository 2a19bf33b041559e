"""ROS 2 bags (rosbag2, MCAP storage) <-> stores, read and written with ``rosbags`` (pure Python, no ROS install).

Import uses the **topic map the policy node uses** (``robostack.ros.topic_map``), so a bag recorded on the robot
becomes a store with exactly the observation layout the deployed model expects: JointState picked by joint name
(any order in the message), PoseStamped -> xyz + quaternion, Image (rgb8/bgr8) -> HxWx3, Float32MultiArray. The
command topic (Float64MultiArray) is the executed ``action``.

- **Resampling**: a grid at ``rate_hz`` over each episode; at every grid time each input takes its newest message
  at or before it -- stamped types by ``header.stamp``, unstamped ones (arrays, Bool) by the bag's receive time.
  Steps before every input has spoken are skipped. The age of each input at each step is measured; with
  ``max_age_s`` the steps with an older input are dropped (and counted), otherwise only reported.
- **Episodes**: ``episodes_from`` names a std_msgs/Bool topic (True while an episode runs: each rising edge starts
  one, each falling edge ends it); without it the whole bag is one episode.
- **Teleop**: when the bag has the mux's topics (``~/is_intervention`` Bool, ``~/policy_action`` and
  ``~/human_action`` Float64MultiArray of ``mux``), the store gets ``is_intervention``, ``policy_action`` and
  ``human_action`` resampled the same way (``is_intervention`` False before the first flag).
- Bad bags -- a topic of the map missing, a message type that is not the map's, a joint absent from JointState,
  stamps going backwards on a topic, no messages -- are one line, and nothing is written.

Export writes, per step of every episode, the observation messages of the topic map (stamped at the episode's
base time + ``timestamp``), the command, the episode marker (``/robostack/episode`` Bool) and, where the store has
them, the mux's topics: a bag ``ros2 bag play`` replays and this importer reads back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import RobostackError, StoreError
from robostack.ros.topic_map import TopicMap, stamp_seconds, to_array
from robostack.utils.provenance import provenance

MSG_TYPES = {
    "joint_state": "sensor_msgs/msg/JointState",
    "float32_array": "std_msgs/msg/Float32MultiArray",
    "pose": "geometry_msgs/msg/PoseStamped",
    "image": "sensor_msgs/msg/Image",
}
COMMAND_TYPE = "std_msgs/msg/Float64MultiArray"
BOOL = "std_msgs/msg/Bool"
EPISODE_TOPIC = "/robostack/episode"
SAME_TIME_S = 1e-6
"""A message stamped within this of a grid time counts as at it (stamps and the grid are both rounded floats)."""


def _typestore() -> Any:
    try:
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise RobostackError(f"rosbags is not installed ({exc}); it reads and writes ROS 2 bags") from None
    return get_typestore(Stores.ROS2_JAZZY)


@dataclass
class Series:
    """One topic's messages: times (s) and values, in bag order."""

    times: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def at(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the newest message at or before each grid time (-1: none yet) and its age."""
        t = np.asarray(self.times)
        idx = np.searchsorted(t, grid + SAME_TIME_S, side="right") - 1
        age = np.where(idx >= 0, grid - t[np.maximum(idx, 0)], np.inf)
        return idx, age


@dataclass
class BagImport:
    episodes: int
    steps: int
    dropped: int
    max_age_s: dict[str, float]


def _read_bag(
    path: Path, topics: dict[str, str], ts: Any
) -> dict[str, tuple[list[float], list[float], list[Any]]]:
    """topic -> (receive times, header stamps or receive times, messages), for the topics asked (type-checked)."""
    from rosbags.rosbag2 import Reader

    if not (path / "metadata.yaml").is_file():
        raise StoreError(f"{path}: not a rosbag2 folder (no metadata.yaml)")
    out: dict[str, tuple[list[float], list[float], list[Any]]] = {}
    with Reader(path) as reader:
        have = {c.topic: c.msgtype for c in reader.connections}
        for topic, want in topics.items():
            if topic in have and have[topic] != want:
                raise StoreError(f"{path}: topic {topic} carries {have[topic]}, the topic map expects {want}")
        conns = [c for c in reader.connections if c.topic in topics]
        for c in conns:
            out.setdefault(c.topic, ([], [], []))
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            recv = t_ns * 1e-9
            stamp = stamp_seconds(msg) if hasattr(msg, "header") else recv
            r, s, m = out[conn.topic]
            if s and stamp < s[-1]:
                raise StoreError(
                    f"{path}: stamps on {conn.topic} go backwards ({stamp:.6f} s after {s[-1]:.6f} s)"
                )
            r.append(recv)
            s.append(stamp)
            m.append(msg)
    return out


def import_rosbag(
    bag: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    topic_map: str | os.PathLike[str],
    rate_hz: float = 20.0,
    episodes_from: str | None = None,
    max_age_s: float | None = None,
    mux: str = "/teleop_mux_node",
    task: str = "",
) -> BagImport:
    bag, dst = Path(bag), Path(dst)
    if (dst / "zarr.json").exists():
        raise StoreError(f"{dst}: already exists; import writes a new store")
    if rate_hz <= 0:
        raise StoreError(f"--rate must be positive, got {rate_hz}")
    tmap = TopicMap.load(topic_map)
    if tmap.command.type != "float64_array":
        raise StoreError(
            f"{topic_map}: importing a {tmap.command.type} command is not supported (float64_array)"
        )
    ts = _typestore()
    wanted = {src.topic: MSG_TYPES[src.type] for src in tmap.observations.values()}
    wanted[tmap.command.topic] = COMMAND_TYPE
    extra = {
        f"{mux}/is_intervention": BOOL,
        f"{mux}/policy_action": COMMAND_TYPE,
        f"{mux}/human_action": COMMAND_TYPE,
    }
    if episodes_from:
        wanted[episodes_from] = BOOL
    data = _read_bag(bag, {**wanted, **extra}, ts)
    missing = [t for t in wanted if not data.get(t, ([], [], []))[2]]
    if missing:
        raise StoreError(
            f"{bag}: no messages on {', '.join(missing)} (named by the topic map / --episodes-from)"
        )
    series: dict[str, Series] = {}
    for key, src in tmap.observations.items():
        _, stamps, msgs = data[src.topic]
        try:
            values = [to_array(src, m) for m in msgs]
        except Exception as exc:  # a joint missing from JointState, a wrong encoding
            raise StoreError(f"{bag}: {src.topic}: {exc}") from None
        series[key] = Series(stamps if src.stamped else data[src.topic][0], values)
    recv, _, msgs = data[tmap.command.topic]
    series["action"] = Series(recv, [np.asarray(m.data, np.float32) for m in msgs])
    for name, key in (("policy_action", "policy_action"), ("human_action", "human_action")):
        r, _, m = data.get(f"{mux}/{name}", ([], [], []))
        if m:
            series[key] = Series(r, [np.asarray(x.data, np.float32) for x in m])
    flags = data.get(f"{mux}/is_intervention", ([], [], []))
    spans = _episodes(data[episodes_from] if episodes_from else None, series)
    if not spans:
        raise StoreError(f"{bag}: no episode (the marker {episodes_from} never went True then False)")
    specs = {k: _spec(s.values[0]) for k, s in series.items()}
    for k in ("policy_action", "human_action", "action"):
        if k in specs:
            specs[k] = FeatureSpec("float32", specs[k].shape)
    specs["is_intervention"] = FeatureSpec("bool", (), description="a human had taken over at this step")
    specs["timestamp"] = FeatureSpec("float64", (), units="s", description="time since the episode's start")
    info = StoreInfo(
        control_rate_hz=float(rate_hz),
        features=specs,
        provenance=provenance(
            {
                "imported_from": str(bag),
                "format": "rosbag2",
                "topic_map": str(topic_map),
                "rate_hz": rate_hz,
                "episodes_from": episodes_from,
                "max_age_s": max_age_s,
            }
        ),  # fmt: skip
        extra={"topic_map": Path(topic_map).read_text()},
    )
    worst: dict[str, float] = {k: 0.0 for k in series}
    steps = dropped = n_eps = 0
    with EpisodeWriter.create(dst, info) as w:
        for t0, t1 in spans:
            grid = np.arange(t0, t1, 1.0 / rate_hz)
            idx = {k: s.at(grid) for k, s in series.items()}
            ok = np.all([i >= 0 for i, _ in idx.values()], axis=0)
            if max_age_s is not None:
                fresh = np.all([a <= max_age_s for _, a in idx.values()], axis=0)
                dropped += int((ok & ~fresh).sum())
                ok &= fresh
            if not ok.any():
                continue
            for k, (_, a) in idx.items():
                worst[k] = max(worst[k], float(a[ok].max()))
            ep = {
                k: np.stack([series[k].values[j] for j in i[ok]]).astype(specs[k].dtype, copy=False)
                for k, (i, _) in idx.items()
            }
            if flags[2]:
                fi, _ = Series(flags[0], [bool(m.data) for m in flags[2]]).at(grid[ok])
                ep["is_intervention"] = np.array([flags[2][j].data if j >= 0 else False for j in fi], bool)
            else:
                ep["is_intervention"] = np.zeros(int(ok.sum()), bool)
            ep["timestamp"] = grid[ok] - t0
            w.add_episode(ep, success=False, source="real", task=task, seed=-1)
            steps += int(ok.sum())
            n_eps += 1
    if n_eps == 0:
        raise StoreError(f"{bag}: no step had every input (drop fewer with a larger --max-age)")
    return BagImport(n_eps, steps, dropped, worst)


def _spec(v: np.ndarray) -> FeatureSpec:
    v = np.asarray(v)
    return FeatureSpec("uint8" if v.dtype == np.uint8 else "float32", tuple(v.shape))


def _episodes(
    marker: tuple[list[float], list[float], list[Any]] | None, series: dict[str, Series]
) -> list[tuple[float, float]]:
    if marker is None:
        start = max(s.times[0] for s in series.values())
        end = max(s.times[-1] for s in series.values())
        return [(start, end + 1e-9)]
    spans, t_on = [], None
    for t, m in zip(marker[0], marker[2], strict=True):
        if m.data and t_on is None:
            t_on = t
        elif not m.data and t_on is not None:
            spans.append((t_on, t))
            t_on = None
    return spans


# --------------------------------------------------------------------------- export
def _time(ts: Any, t: float) -> Any:
    sec = int(np.floor(t))
    return ts.types["builtin_interfaces/msg/Time"](
        sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000
    )


def _header(ts: Any, t: float, frame: str = "") -> Any:
    return ts.types["std_msgs/msg/Header"](stamp=_time(ts, t), frame_id=frame)


def _float_array(ts: Any, kind: str, values: np.ndarray) -> Any:
    layout = ts.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    dtype = np.float64 if kind.endswith("Float64MultiArray") else np.float32
    return ts.types[kind](layout=layout, data=np.asarray(values, dtype).reshape(-1))


def _obs_message(ts: Any, src: Any, value: np.ndarray, t: float) -> Any:
    T = ts.types
    if src.type == "joint_state":
        n = len(src.joints)
        per = {f: np.zeros(n) for f in ("position", "velocity", "effort")}
        for i, f in enumerate(src.fields):
            per[f] = np.asarray(value[i * n : (i + 1) * n], np.float64)
        return T["sensor_msgs/msg/JointState"](header=_header(ts, t), name=list(src.joints), **per)
    if src.type == "pose":
        P, Q = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
        v = [float(x) for x in value]
        pose = T["geometry_msgs/msg/Pose"](
            position=P(x=v[0], y=v[1], z=v[2]), orientation=Q(x=v[3], y=v[4], z=v[5], w=v[6])
        )
        return T["geometry_msgs/msg/PoseStamped"](header=_header(ts, t), pose=pose)
    if src.type == "image":
        h, w, _ = value.shape
        return T["sensor_msgs/msg/Image"](header=_header(ts, t), height=h, width=w, encoding="rgb8", is_bigendian=0,
                                          step=w * 3, data=np.ascontiguousarray(value, np.uint8).reshape(-1))  # fmt: skip
    return _float_array(ts, MSG_TYPES["float32_array"], value)


def export_rosbag(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    topic_map: str | os.PathLike[str],
    mux: str = "/teleop_mux_node",
) -> int:
    from rosbags.rosbag2 import StoragePlugin, Writer

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise StoreError(f"{dst}: already exists; export writes a new bag")
    store = EpisodeStore(src)
    if store.n_episodes == 0:
        raise StoreError(f"{src}: no committed episodes to export")
    tmap = TopicMap.load(topic_map)
    missing = [k for k in tmap.observations if k not in store.keys]
    if missing:
        raise StoreError(f"{src}: the topic map's {', '.join(missing)} are not in the store")
    ts = _typestore()
    rate = store.info.control_rate_hz or 20.0
    bool_t = ts.types[BOOL]
    with Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {
            key: w.add_connection(s.topic, MSG_TYPES[s.type], typestore=ts)
            for key, s in tmap.observations.items()
        }
        conns["action"] = w.add_connection(tmap.command.topic, COMMAND_TYPE, typestore=ts)
        marker = w.add_connection(EPISODE_TOPIC, BOOL, typestore=ts)
        for key, name in (("is_intervention", "is_intervention"), ("policy_action", "policy_action"),
                          ("human_action", "human_action")):  # fmt: skip
            if key in store.keys:
                conns[key] = w.add_connection(f"{mux}/{name}", BOOL if key == "is_intervention" else COMMAND_TYPE,
                                              typestore=ts)  # fmt: skip
        base = 1_000.0  # seconds: episodes laid one after the other, a second apart
        for meta in store.episodes():
            data = store.read_episode(meta.index)
            times = (
                data["timestamp"] - data["timestamp"][0]
                if "timestamp" in data
                else np.arange(meta.length) / rate
            )
            w.write(marker, int(base * 1e9), ts.serialize_cdr(bool_t(data=True), BOOL))
            for t in range(meta.length):
                tt = base + float(times[t])
                ns = int(round(tt * 1e9))
                for key, s in tmap.observations.items():
                    msg = _obs_message(ts, s, data[key][t], tt)
                    w.write(conns[key], ns, ts.serialize_cdr(msg, MSG_TYPES[s.type]))
                if "is_intervention" in conns:
                    w.write(
                        conns["is_intervention"],
                        ns + 1,
                        ts.serialize_cdr(bool_t(data=bool(data["is_intervention"][t])), BOOL),
                    )
                for key in ("policy_action", "human_action", "action"):
                    if key in conns:
                        msg = _float_array(ts, COMMAND_TYPE, data[key][t])
                        w.write(conns[key], ns + 2, ts.serialize_cdr(msg, COMMAND_TYPE))
            end = base + float(times[-1]) + 1.0 / rate
            w.write(marker, int(round(end * 1e9)), ts.serialize_cdr(bool_t(data=False), BOOL))
            base = np.ceil(end) + 1.0
    return store.n_episodes
