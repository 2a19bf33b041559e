"""ROS 2 bags <-> stores with bags written here by the rosbag2 writer library (rosbags, MCAP): JointState with its
joints in another order than the model's, PoseStamped, Image, commands, the mux's takeover flag and actions,
episode markers, jittered stamps. Import resamples by stamp exactly as documented; export reads back to the same
messages and re-imports to the same store; every bad bag is one line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from robostack.data import EpisodeStore

from conftest import assert_one_line_error, run_cli

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
RATE = 20.0
TOPIC_MAP = {
    "observations": {
        "obs/state": {
            "topic": "/robot/joint_states",
            "type": "joint_state",
            "joints": ["j1", "j2"],
            "fields": ["position", "velocity"],
        },  # fmt: skip
        "obs/ee": {"topic": "/robot/ee_pose", "type": "pose"},
        "obs/image_front": {"topic": "/cam/image", "type": "image"},
    },
    "command": {"type": "float64_array", "topic": "/cmd"},
}
EPISODES = ((100.0, 101.5), (103.0, 104.0))  # marker on/off times (s)


def stamp(t: float):
    sec = int(np.floor(t))
    return T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((t - sec) * 1e9)))


def header(t: float):
    return T["std_msgs/msg/Header"](stamp=stamp(t), frame_id="")


def f64(values):
    return T["std_msgs/msg/Float64MultiArray"](layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                                               data=np.asarray(values, np.float64))  # fmt: skip


def write_bag(path: Path, *, joints=("j2", "j0", "j1"), cmd_type="std_msgs/msg/Float64MultiArray",
              backwards=False, skip_topic=None, empty=False) -> dict:  # fmt: skip
    """A bag like a robot records: 50 Hz joint states and 20 Hz poses with jittered stamps, 10 Hz images, 20 Hz
    commands, the mux's flag and actions, episode markers. Returns what was sent (time, value) per key."""
    rng = np.random.default_rng(0)
    sent: dict[str, list] = {k: [] for k in ("state", "ee", "image", "action", "flag", "policy", "human")}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = {
            "js": w.add_connection("/robot/joint_states", "sensor_msgs/msg/JointState", typestore=TS),
            "pose": w.add_connection("/robot/ee_pose", "geometry_msgs/msg/PoseStamped", typestore=TS),
            "img": w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=TS),
            "cmd": w.add_connection("/cmd", cmd_type, typestore=TS),
            "mark": w.add_connection("/episode", "std_msgs/msg/Bool", typestore=TS),
            "flag": w.add_connection("/teleop_mux_node/is_intervention", "std_msgs/msg/Bool", typestore=TS),
            "pa": w.add_connection(
                "/teleop_mux_node/policy_action", "std_msgs/msg/Float64MultiArray", typestore=TS
            ),
            "ha": w.add_connection(
                "/teleop_mux_node/human_action", "std_msgs/msg/Float64MultiArray", typestore=TS
            ),
        }
        if empty:
            return sent
        events = []  # (receive time, connection, message, msgtype)

        def add(t, key, msg, msgtype):
            events.append((t, key, msg, msgtype))

        for t0, t1 in EPISODES:
            add(t0 - 0.0005, "mark", T["std_msgs/msg/Bool"](data=True), "std_msgs/msg/Bool")
            add(t1, "mark", T["std_msgs/msg/Bool"](data=False), "std_msgs/msg/Bool")
        for k in range(int(6.0 * 50)):
            t = 99.5 + k / 50 + rng.uniform(-0.003, 0.003)
            pos = {n: 10 * i + t for i, n in enumerate(joints)}
            msg = T["sensor_msgs/msg/JointState"](
                header=header(t), name=list(joints), position=np.array([pos[n] for n in joints]),
                velocity=np.array([-pos[n] for n in joints]), effort=np.zeros(len(joints)),
            )  # fmt: skip
            if "j1" in joints and "j2" in joints:
                sent["state"].append(
                    (t, np.array([pos["j1"], pos["j2"], -pos["j1"], -pos["j2"]], np.float32))
                )
            add(t + 0.002, "js", msg, "sensor_msgs/msg/JointState")  # received a little after its stamp
        for k in range(int(6.0 * 20)):
            t = 99.5 + k / 20 + rng.uniform(-0.004, 0.004)
            hdr = (
                t - 0.2 if backwards and k == 50 else t
            )  # a driver whose clock jumps back (arrival order kept)
            v = [t, 2 * t, 3 * t, 0.0, 0.0, 0.0, 1.0]
            P, Q = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
            pose = T["geometry_msgs/msg/Pose"](
                position=P(x=v[0], y=v[1], z=v[2]), orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0)
            )
            add(t + 0.001, "pose", T["geometry_msgs/msg/PoseStamped"](header=header(hdr), pose=pose),
                "geometry_msgs/msg/PoseStamped")  # fmt: skip
            sent["ee"].append((t, np.array(v, np.float32)))
            tc = 99.5 + k / 20 + 0.01
            a = np.array([np.sin(tc), np.cos(tc)])
            cmd = f64(a) if cmd_type.endswith("Float64MultiArray") else T["std_msgs/msg/String"](data="x")
            add(tc, "cmd", cmd, cmd_type)
            sent["action"].append((tc, a.astype(np.float32)))
            flag = 100.4 <= tc < 100.9
            add(tc, "flag", T["std_msgs/msg/Bool"](data=flag), "std_msgs/msg/Bool")
            sent["flag"].append((tc, flag))
            add(tc, "pa", f64(a + 1), "std_msgs/msg/Float64MultiArray")
            sent["policy"].append((tc, (a + 1).astype(np.float32)))
            add(tc, "ha", f64(a * 0), "std_msgs/msg/Float64MultiArray")
            sent["human"].append((tc, (a * 0).astype(np.float32)))
        for k in range(int(6.0 * 10)):
            t = 99.5 + k / 10
            img = np.full((6, 8, 3), k % 256, np.uint8)
            add(t + 0.01, "img", T["sensor_msgs/msg/Image"](header=header(t), height=6, width=8, encoding="rgb8",
                is_bigendian=0, step=24, data=img.reshape(-1)), "sensor_msgs/msg/Image")  # fmt: skip
            sent["image"].append((t, img))
        for t, key, msg, msgtype in sorted(events, key=lambda e: e[0]):
            if key == {"js": "js", "pose": "pose", "img": "img"}.get(skip_topic):
                continue
            w.write(c[key], int(round(t * 1e9)), TS.serialize_cdr(msg, msgtype))
    return sent


def newest(sent, grid):
    times = np.array([t for t, _ in sent])
    idx = np.searchsorted(times, grid + 1e-6, side="right") - 1
    return np.stack([np.asarray(sent[i][1]) for i in idx])


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    d = tmp_path_factory.mktemp("bag")
    sent = write_bag(d / "run")
    (d / "map.yaml").write_text(yaml.safe_dump(TOPIC_MAP))
    return d / "run", d / "map.yaml", sent


def test_import_resamples_by_stamp_and_splits_episodes(tmp_path, bag):
    path, tmap, sent = bag
    out = tmp_path / "s.zarr"
    proc = run_cli("data", "import", path, out, "--from", "rosbag2", "--topic-map", tmap, "--rate", "20",
                   "--episodes-from", "/episode", "--task", "push")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "oldest input per key" in proc.stdout
    s = EpisodeStore(out)
    assert s.n_episodes == 2 and s.info.control_rate_hz == 20.0
    for e, (t0, t1) in zip(s.episodes(), EPISODES, strict=True):
        grid = np.arange(t0 - 0.0005, t1, 1 / RATE)
        assert e.length == len(grid) and e.task == "push" and e.source == "real"
        d = s.read_episode(e.index)
        np.testing.assert_array_equal(d["obs/state"], newest(sent["state"], grid))  # j1, j2 by name
        np.testing.assert_array_equal(d["obs/ee"], newest(sent["ee"], grid))
        np.testing.assert_array_equal(d["obs/image_front"], newest(sent["image"], grid))
        np.testing.assert_array_equal(d["action"], newest(sent["action"], grid))
        np.testing.assert_array_equal(d["policy_action"], newest(sent["policy"], grid))
        np.testing.assert_array_equal(d["is_intervention"], newest(sent["flag"], grid))
        np.testing.assert_allclose(d["timestamp"], grid - grid[0], atol=1e-9)
    assert s.read("is_intervention").any()
    # the robot's bag trains a policy on the topic map's observations, and the policy goes back out as a model
    run = tmp_path / "run"
    proc = run_cli("train", "--policy", "gaussian", "--data", out, "--out", run, "--steps", "2", "--eval.episodes=0",
                   "--data.success_only=false", "--policy.horizon=1", "--policy.n_action_steps=1",
                   "--policy.obs_keys=[obs/state,obs/ee]", "--optim.batch_size=4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert run_cli("export", "--policy", run, "--out", tmp_path / "m.onnx").returncode == 0


def test_max_age_drops_stale_steps(tmp_path, bag):
    path, tmap, _ = bag
    out = tmp_path / "fresh.zarr"
    proc = run_cli("data", "import", path, out, "--from", "rosbag2", "--topic-map", tmap, "--episodes-from",
                   "/episode", "--max-age", "0.06")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "dropped" in proc.stdout
    full = sum(len(np.arange(t0 - 0.0005, t1, 1 / RATE)) for t0, t1 in EPISODES)
    assert 0 < EpisodeStore(out).n_steps < full  # 10 Hz images: every other step sees one 0.1 s old


def test_export_reads_back_and_reimports_equal(tmp_path, bag):
    path, tmap, _ = bag
    store, out, again = tmp_path / "s.zarr", tmp_path / "out_bag", tmp_path / "again.zarr"
    assert run_cli("data", "import", path, store, "--from", "rosbag2", "--topic-map", tmap,
                   "--episodes-from", "/episode").returncode == 0  # fmt: skip
    proc = run_cli("data", "export", store, out, "--to", "rosbag2", "--topic-map", tmap)
    assert proc.returncode == 0, proc.stderr
    assert (out / "metadata.yaml").is_file() and list(out.glob("*.mcap"))
    s = EpisodeStore(store)
    with Reader(out) as r:
        topics = {c.topic: c.msgtype for c in r.connections}
        assert (
            topics["/robot/joint_states"] == "sensor_msgs/msg/JointState"
            and topics["/cmd"] == "std_msgs/msg/Float64MultiArray"
        )
        js = [
            TS.deserialize_cdr(raw, c.msgtype)
            for c, _, raw in r.messages()
            if c.topic == "/robot/joint_states"
        ]
        cmds = [TS.deserialize_cdr(raw, c.msgtype) for c, _, raw in r.messages() if c.topic == "/cmd"]
    assert len(js) == s.n_steps and list(js[0].name) == ["j1", "j2"]
    np.testing.assert_array_equal(
        np.stack([m.position for m in js]), s.read("obs/state")[:, :2].astype(np.float64)
    )
    np.testing.assert_array_equal(np.stack([m.data for m in cmds]).astype(np.float32), s.read("action"))
    proc = run_cli("data", "import", out, again, "--from", "rosbag2", "--topic-map", tmap,
                   "--episodes-from", "/robostack/episode")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    b = EpisodeStore(again)
    assert [e.length for e in b.episodes()] == [e.length for e in s.episodes()]
    for k in s.keys:
        if k == "timestamp":
            np.testing.assert_allclose(b.read(k), s.read(k), atol=1e-6)
        else:
            np.testing.assert_array_equal(b.read(k), s.read(k), err_msg=k)


@pytest.mark.parametrize(
    ("kwargs", "map_patch", "fragment"),
    [
        ({"skip_topic": "pose"}, None, "no messages on /robot/ee_pose"),
        ({"cmd_type": "std_msgs/msg/String"}, None, "carries std_msgs/msg/String"),
        ({}, {"joints": ["j1", "jX"]}, "joint(s) ['jX'] not in /robot/joint_states"),
        ({"backwards": True}, None, "stamps on /robot/ee_pose go backwards"),
        ({"empty": True}, None, "no messages on"),
    ],
)
def test_bad_bags_are_one_line_and_write_nothing(tmp_path, kwargs, map_patch, fragment):
    write_bag(tmp_path / "b", **kwargs)
    tm = yaml.safe_load(yaml.safe_dump(TOPIC_MAP))
    if map_patch:
        tm["observations"]["obs/state"].update(map_patch)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(tm))
    out = tmp_path / "x.zarr"
    proc = run_cli(
        "data", "import", tmp_path / "b", out, "--from", "rosbag2", "--topic-map", tmp_path / "m.yaml"
    )
    assert_one_line_error(proc, fragment)
    assert not out.exists()


def test_not_a_bag_and_no_topic_map(tmp_path):
    assert_one_line_error(
        run_cli(
            "data",
            "import",
            tmp_path,
            tmp_path / "x.zarr",
            "--from",
            "rosbag2",
            "--topic-map",
            tmp_path / "m",
        ),
        "no such topic map",
    )
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(TOPIC_MAP))
    assert_one_line_error(
        run_cli(
            "data",
            "import",
            tmp_path,
            tmp_path / "x.zarr",
            "--from",
            "rosbag2",
            "--topic-map",
            tmp_path / "m.yaml",
        ),
        "not a rosbag2 folder",
    )
    assert_one_line_error(
        run_cli("data", "import", tmp_path, tmp_path / "y.zarr", "--from", "rosbag2"), "--topic-map"
    )
