"""Import speed (README): frames per second into a store, for a LeRobot v3 dataset with one 640x480 video camera
and for a rosbag2 (MCAP) bag with two 640x480 cameras at 30 Hz, each against a baseline measured in the same run:

- LeRobot: its own frame iteration (``dataset[i]`` for every frame) over the same dataset -- in this environment it
  cannot decode video (no torchcodec; its PyAV fallback calls ``torchvision.io.VideoReader``, which torchvision
  0.29 does not have), so the row says so and the reference is PyAV decoding the same mp4 alone;
- bags: reading and deserialising every message with rosbags alone (no resampling, no store).

    python benchmarks/interop_import.py [--frames 600] [--out benchmarks/results/interop_import.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
H, W = 480, 640


def image(t: int, cam: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack(
        [(x // 4 + 3 * t) % 256, (y // 4 + 40 * cam) % 256, np.full_like(x, (5 * t) % 256)], -1
    ).astype(np.uint8)


def make_lerobot(root: Path, frames: int, per_episode: int = 100) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        "observation.images.front": {
            "dtype": "video",
            "shape": (H, W, 3),
            "names": ["height", "width", "channels"],
        },
        "action": {"dtype": "float32", "shape": (6,), "names": None},
    }
    ds = LeRobotDataset.create("bench/ds", fps=30, root=root, features=feats, use_videos=True)
    for t in range(frames):
        ds.add_frame({"observation.state": np.full(6, t, np.float32), "observation.images.front": image(t),
                      "action": np.full(6, -t, np.float32), "task": "bench"})  # fmt: skip
        if (t + 1) % per_episode == 0 or t == frames - 1:
            ds.save_episode()
    ds.finalize()


def make_bag(path: Path, frames: int) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cams = [
            w.add_connection(f"/cam{i}/image_raw", "sensor_msgs/msg/Image", typestore=ts) for i in range(2)
        ]
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        cmd = w.add_connection("/cmd", "std_msgs/msg/Float64MultiArray", typestore=ts)
        layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        for k in range(frames):
            t = 10.0 + k / 30
            st = T["builtin_interfaces/msg/Time"](
                sec=int(t), nanosec=int(round((t % 1) * 1e9)) % 1_000_000_000
            )
            hdr = T["std_msgs/msg/Header"](stamp=st, frame_id="")
            ns = int(round(t * 1e9))
            for i, c in enumerate(cams):
                msg = T["sensor_msgs/msg/Image"](header=hdr, height=H, width=W, encoding="rgb8", is_bigendian=0,
                                                 step=W * 3, data=image(k, i).reshape(-1))  # fmt: skip
                w.write(c, ns, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            msg = T["sensor_msgs/msg/JointState"](header=hdr, name=["a", "b"], position=np.array([t, -t]),
                                                  velocity=np.zeros(2), effort=np.zeros(2))  # fmt: skip
            w.write(js, ns, ts.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
            w.write(cmd, ns + 1, ts.serialize_cdr(T["std_msgs/msg/Float64MultiArray"](layout=layout,
                                                  data=np.array([t, t])), "std_msgs/msg/Float64MultiArray"))  # fmt: skip
    tmap = path.parent / "map.yaml"
    tmap.write_text(yaml.safe_dump({
        "observations": {
            "obs/state": {"topic": "/joint_states", "type": "joint_state", "joints": ["a", "b"]},
            "obs/image_cam0": {"topic": "/cam0/image_raw", "type": "image"},
            "obs/image_cam1": {"topic": "/cam1/image_raw", "type": "image"},
        },
        "command": {"type": "float64_array", "topic": "/cmd"},
    }))  # fmt: skip
    return tmap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from robostack.data.lerobot_io import _video_frames, import_lerobot
    from robostack.ros.bag_io import import_rosbag

    lines = ["# Import speed", "", f"`python {' '.join(sys.argv)}` ({args.frames} frames of 640x480)", ""]
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
        tmp = Path(d)
        make_lerobot(tmp / "lr", args.frames)
        t0 = time.perf_counter()
        import_lerobot(tmp / "lr", tmp / "lr.zarr", progress=False)
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = sum(1 for p in sorted((tmp / "lr" / "videos").rglob("*.mp4")) for _ in _video_frames(p))
        t_decode = time.perf_counter() - t0
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        ds = LeRobotDataset("bench/ds", root=tmp / "lr")
        try:
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            lerobot = f"{len(ds) / (time.perf_counter() - t0):,.0f} frames/s"
        except Exception as exc:
            lerobot = f"fails here: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
        lines += [
            "| input | robostack import | baseline (same run) | ratio |",
            "|---|---|---|---|",
            f"| LeRobot v3, 1 camera (AV1 mp4) | {args.frames / t_import:,.0f} frames/s | PyAV decode alone: "
            f"{n / t_decode:,.0f} frames/s | {t_decode / t_import * args.frames / n:.2f}x |",
            f"| (LeRobot's own `dataset[i]` iteration) | | {lerobot} | |",
        ]
        tmap = make_bag(tmp / "bag", args.frames)
        from rosbags.rosbag2 import Reader
        from rosbags.typesys import Stores, get_typestore

        ts = get_typestore(Stores.ROS2_JAZZY)
        t0 = time.perf_counter()
        with Reader(tmp / "bag") as r:
            msgs = sum(1 for c, _, raw in r.messages() if ts.deserialize_cdr(raw, c.msgtype) is not None)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = import_rosbag(tmp / "bag", tmp / "bag.zarr", tmap, rate_hz=30.0)
        t_bag = time.perf_counter() - t0
        lines.append(
            f"| rosbag2 MCAP, 2 cameras at 30 Hz | {res.steps / t_bag:,.0f} steps/s ({2 * res.steps / t_bag:,.0f} "
            f"camera frames/s) | rosbags read + deserialise alone: {msgs / t_read:,.0f} messages/s "
            f"({2 * args.frames / t_read:,.0f} camera frames/s) | {t_read / t_bag:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
