"""Episode-store benchmark: append rate, training-window throughput (vs LeRobot and raw zarr, same data, same run),
and sustained two-camera 640x480 recording.

    .venv/bin/python benchmarks/bench_store.py [--episodes 200] [--out benchmarks/results]

Prints a table with ratios against the baselines measured in this run and writes JSON + Markdown results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from robostack.data import EpisodeStore, EpisodeWriter, FeatureSpec, StoreInfo
from robostack.data.buffer import load_buffer
from robostack.data.sampler import SequenceSampler
from robostack.utils.table import format_markdown, format_table

LOWDIM = {
    "obs/state": FeatureSpec("float32", (9,)),
    "obs/object": FeatureSpec("float32", (10,)),
    "action": FeatureSpec("float32", (7,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
    "truncated": FeatureSpec("bool", ()),
    "timestamp": FeatureSpec("float64", ()),
    "is_intervention": FeatureSpec("bool", ()),
    "sim_state": FeatureSpec("float64", (60,)),
}


def lowdim_episode(rng: np.random.Generator, n: int = 200) -> dict[str, np.ndarray]:
    t = np.arange(n)[:, None]
    ep = {}
    for k, s in LOWDIM.items():
        shape = (n, *s.shape)
        if s.dtype == "bool":
            ep[k] = np.zeros(shape, bool)
        else:  # smooth signals plus noise, like real trajectories (compressibility matters)
            base = np.sin(t / 20.0 + rng.uniform(0, 6, (1, *s.shape))) if s.shape else np.sin(t[:, 0] / 20.0)
            ep[k] = (base + 0.01 * rng.normal(size=shape)).astype(s.dtype)
    return ep


def bench_append(tmp: Path, episodes: int, fsync: bool) -> float:
    rng = np.random.default_rng(0)
    eps = [lowdim_episode(rng) for _ in range(episodes)]
    path = tmp / f"append_{fsync}.zarr"
    w = EpisodeWriter.create(path, StoreInfo(control_rate_hz=20.0, features=LOWDIM), fsync=fsync)
    t0 = time.perf_counter()
    for ep in eps:
        w.add_episode(ep, success=True, task="bench")
    rate = episodes / (time.perf_counter() - t0)
    w.close()
    return rate


def time_calls(fn, min_s: float = 1.0) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        n += fn()
    return n / (time.perf_counter() - t0)


def bench_windows(store_path: Path, tmp: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    keys = ["obs/state", "obs/object", "action"]
    t0 = time.perf_counter()
    buf = load_buffer(store_path, keys)
    out["load_s"] = time.perf_counter() - t0
    sampler = SequenceSampler(buf, horizon=16, n_obs_steps=2, n_action_steps=8)
    rng = np.random.default_rng(0)

    def robostack_batch() -> int:
        sampler.random_batch(256, rng)
        return 256

    out["robostack_windows_s"] = time_calls(robostack_batch)

    store = EpisodeStore(store_path)
    arrays = {k: store.array(k) for k in keys}

    def zarr_direct() -> int:  # random windows read straight from the on-disk zarr store
        i = int(rng.integers(0, len(sampler)))
        rows = sampler.rows(np.array([i]))[0]
        for a in arrays.values():
            a[int(rows[0]) : int(rows[-1]) + 1]
        return 1

    out["zarr_direct_windows_s"] = time_calls(zarr_direct)
    out.update(bench_lerobot(buf, tmp, rng, len(sampler)))
    return out


def bench_lerobot(buf, tmp: Path, rng: np.random.Generator, n_windows: int) -> dict[str, float]:
    try:
        os.environ.setdefault("HF_HOME", str(tmp / "hf"))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except Exception as exc:  # lerobot is an optional peer here
        print(f"lerobot unavailable ({exc}); skipping the comparison")
        return {}
    fps = 20
    names = {
        "observation.state": "obs/state",
        "observation.environment_state": "obs/object",
        "action": "action",
    }
    features = {
        k: {"dtype": "float32", "shape": tuple(buf.data[v].shape[1:]), "names": None}
        for k, v in names.items()
    }
    root = tmp / "lerobot"
    t0 = time.perf_counter()
    ds = LeRobotDataset.create("robostack/bench", fps=fps, features=features, root=root, use_videos=False)
    for i in range(buf.n_episodes):
        ep = buf.episode(i)
        for t in range(ep["action"].shape[0]):
            ds.add_frame(
                {
                    "observation.state": ep["obs/state"][t],
                    "observation.environment_state": ep["obs/object"][t],
                    "action": ep["action"][t],
                    "task": "bench",
                }
            )
        ds.save_episode()
    ds.finalize()
    write_s = time.perf_counter() - t0
    dt = 1.0 / fps
    ds = LeRobotDataset(
        "robostack/bench",
        root=root,
        delta_timestamps={
            "observation.state": [-dt, 0.0],
            "observation.environment_state": [-dt, 0.0],
            "action": [(i - 1) * dt for i in range(16)],
        },
    )
    n = len(ds)

    def lerobot_item() -> int:
        ds[int(rng.integers(0, n))]
        return 1

    return {"lerobot_windows_s": time_calls(lerobot_item), "lerobot_write_s": write_s}


def bench_cameras(tmp: Path, seconds: float = 10.0) -> dict[str, float]:
    """Two 640x480 RGB cameras + joint state, streamed step by step as a recorder would (30 Hz target)."""
    feats = {
        "obs/image_front": FeatureSpec("uint8", (480, 640, 3)),
        "obs/image_wrist": FeatureSpec("uint8", (480, 640, 3)),
        "obs/joint_state": FeatureSpec("float32", (7,)),
        "action": FeatureSpec("float32", (7,)),
        "timestamp": FeatureSpec("float64", ()),
    }
    frames = _camera_frames()
    n = int(seconds * 30)
    w = EpisodeWriter.create(tmp / "cams.zarr", StoreInfo(control_rate_hz=30.0, features=feats))
    w.begin_episode()
    t0 = time.perf_counter()
    for t in range(n):
        w.add_step(
            {
                "obs/image_front": frames[t % len(frames)],
                "obs/image_wrist": frames[(t + 7) % len(frames)],
                "obs/joint_state": np.full(7, t, np.float32),
                "action": np.zeros(7, np.float32),
                "timestamp": t / 30.0,
            }
        )
    w.end_episode(success=True)
    elapsed = time.perf_counter() - t0
    w.close()
    mb = n * 2 * 480 * 640 * 3 / 1e6
    return {"camera_steps_s": n / elapsed, "camera_raw_mb_s": mb / elapsed}


def _camera_frames() -> list[np.ndarray]:
    """Real rendered frames (MuJoCo, offscreen) with sensor-like noise, so compression sees realistic content."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    rng = np.random.default_rng(0)
    try:
        from robostack.sim.push import PushTask

        task = PushTask()
        task.reset(seed=0)
        frames = []
        for i in range(30):
            task.step(np.array([np.sin(i / 5), np.cos(i / 5)], np.float32))
            img = task.render_frame(width=640, height=480).astype(np.int16)
            frames.append(np.clip(img + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8))
        task.close()
        return frames
    except Exception as exc:
        print(f"offscreen rendering unavailable ({exc}); using synthetic gradients")
        yy, xx = np.mgrid[0:480, 0:640]
        return [((xx + yy + 8 * i) % 256).astype(np.uint8)[..., None].repeat(3, 2) for i in range(30)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="robostack-bench-", dir=os.environ.get("TMPDIR")))
    try:
        print("append (200-step low-dim episodes)...", flush=True)
        append = bench_append(tmp, args.episodes, fsync=False)
        append_fsync = bench_append(tmp, args.episodes, fsync=True)
        print("push expert demos for the window benchmark...", flush=True)
        from robostack.sim.demos import DemoConfig, generate_demos

        store = tmp / "push.zarr"
        generate_demos(
            DemoConfig(task="push", episodes=args.episodes, out=str(store), seed=0), progress=False
        )
        print("training windows...", flush=True)
        win = bench_windows(store, tmp)
        print("two 640x480 cameras...", flush=True)
        cams = bench_cameras(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rs = win["robostack_windows_s"]
    rows = [
        ("append 200-step low-dim episodes (no fsync)", f"{append:,.0f} episodes/s", ">= 50"),
        ("append 200-step low-dim episodes (fsync)", f"{append_fsync:,.0f} episodes/s", ""),
        ("training windows, robostack (RAM, vectorised)", f"{rs:,.0f} windows/s", ">= 500k"),
        ("training windows, zarr read per window", f"{win['zarr_direct_windows_s']:,.0f} windows/s", ""),
    ]
    if "lerobot_windows_s" in win:
        rows.append(("training windows, LeRobotDataset[i]", f"{win['lerobot_windows_s']:,.0f} windows/s", ""))
    rows += [
        ("two 640x480 cameras + state, streamed", f"{cams['camera_steps_s']:.1f} steps/s", ">= 30"),
        ("  raw image bandwidth", f"{cams['camera_raw_mb_s']:.0f} MB/s", ""),
    ]
    ratio_rows = [("robostack / zarr direct", f"{rs / win['zarr_direct_windows_s']:,.0f}x")]
    if "lerobot_windows_s" in win:
        ratio_rows.append(("robostack / LeRobotDataset", f"{rs / win['lerobot_windows_s']:,.0f}x"))
    print()
    print(format_table(["measure", "result", "target"], rows))
    print()
    print(format_table(["ratio (same run)", "value"], ratio_rows))

    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "append_episodes_s": append,
        "append_fsync_episodes_s": append_fsync,
        **win,
        **cams,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "store.json").write_text(json.dumps(result, indent=1))
    (out / "store.md").write_text(
        f"# Episode store benchmark ({result['date']}, {result['machine']})\n\n"
        f"Command: `.venv/bin/python benchmarks/bench_store.py --episodes {args.episodes}`\n\n"
        + format_markdown(["measure", "result", "target"], rows)
        + "\n\n"
        + format_markdown(["ratio (same run)", "value"], ratio_rows)
        + "\n"
    )
    print(f"\nwrote {out / 'store.json'} and {out / 'store.md'}")


if __name__ == "__main__":
    main()
