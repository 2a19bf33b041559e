"""LeRobot v3.0 <-> store, with datasets written and read by LeRobot's own library: import keeps every array
(images within the video codec's loss), export gives a dataset LeRobot loads offline with equal arrays, and a
store's own keys survive store -> LeRobot -> store."""

from __future__ import annotations

import os

import numpy as np
import pytest

from robostack.data import EpisodeStore

from conftest import assert_one_line_error, run_cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LENGTHS = (7, 12, 5)
TASKS = ("push the block", "lift the cube", "push the block")


def frame_image(ep: int, t: int) -> np.ndarray:
    """Smooth images (a moving gradient): what a lossy video codec keeps well, unlike noise."""
    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 4 + t * 6) % 256, (y * 5 + ep * 40) % 256, np.full_like(x, 100 + 10 * t)], axis=-1)
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def lerobot_dataset(tmp_path_factory):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path_factory.mktemp("lr") / "ds"
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "observation.environment_state": {"dtype": "float32", "shape": (2,), "names": ["bx", "by"]},
        "observation.images.front": {
            "dtype": "video",
            "shape": (48, 64, 3),
            "names": ["height", "width", "channels"],
        },
        "action": {"dtype": "float32", "shape": (2,), "names": ["vx", "vy"]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    }
    ds = LeRobotDataset.create("test/ds", fps=20, root=root, features=features, use_videos=True)
    rng = np.random.default_rng(0)
    written = {k: [] for k in ("state", "env", "action", "reward", "done", "image")}
    for ep, n in enumerate(LENGTHS):
        for t in range(n):
            f = {
                "observation.state": rng.normal(size=3).astype(np.float32),
                "observation.environment_state": rng.normal(size=2).astype(np.float32),
                "observation.images.front": frame_image(ep, t),
                "action": rng.normal(size=2).astype(np.float32),
                "next.reward": np.array([float(t == n - 1 and ep != 1)], np.float32),
                "next.done": np.array([t == n - 1 and ep != 1]),  # episode 1 ends on its time limit
                "task": TASKS[ep],
            }
            for k, lk in (("state", "observation.state"), ("env", "observation.environment_state"),
                          ("action", "action"), ("reward", "next.reward"), ("done", "next.done"),
                          ("image", "observation.images.front")):  # fmt: skip
                written[k].append(np.asarray(f[lk]))
            ds.add_frame(f)
        ds.save_episode()
    ds.finalize()
    return root, {k: np.stack(v) for k, v in written.items()}


def test_import_keeps_every_array(tmp_path, lerobot_dataset):
    root, w = lerobot_dataset
    out = tmp_path / "s.zarr"
    proc = run_cli("data", "import", root, out, "--from", "lerobot")
    assert proc.returncode == 0, proc.stderr
    s = EpisodeStore(out)
    assert [e.length for e in s.episodes()] == list(LENGTHS)
    assert [e.task for e in s.episodes()] == list(TASKS)
    assert s.info.control_rate_hz == 20.0 and [e.source for e in s.episodes()] == ["imported"] * 3
    np.testing.assert_array_equal(s.read("obs/state"), w["state"])
    np.testing.assert_array_equal(s.read("obs/environment_state"), w["env"])
    np.testing.assert_array_equal(s.read("action"), w["action"])
    np.testing.assert_array_equal(s.read("reward"), w["reward"][:, 0])
    np.testing.assert_array_equal(s.read("terminated"), w["done"][:, 0])
    ends = np.cumsum(LENGTHS) - 1
    assert np.flatnonzero(s.read("truncated")).tolist() == [ends[1]]  # the episode without next.done
    np.testing.assert_allclose(
        s.read("timestamp"), np.concatenate([np.arange(n) / 20 for n in LENGTHS]), atol=1e-6
    )
    assert list(s.info.features["obs/state"].names) == ["x", "y", "z"]
    img = s.read("obs/image_front")
    assert img.shape == w["image"].shape and img.dtype == np.uint8
    err = np.abs(img.astype(int) - w["image"].astype(int))
    assert (
        err.mean() < 6.0
    ), err.mean()  # AV1 + 4:2:0 chroma is lossy (the wrapping gradients are hard for it)
    shifted = np.abs(img[1:].astype(int) - w["image"][:-1].astype(int)).mean()
    assert shifted > 3 * err.mean(), (
        shifted,
        err.mean(),
    )  # and the frames are the right ones, not neighbours
    assert [e.success for e in s.episodes()] == [True, False, True]
    # a team's dataset trains a policy (camera included) and the policy exports
    run = tmp_path / "run"
    proc = run_cli("train", "--policy", "gaussian", "--data", out, "--out", run, "--steps", "2", "--eval.episodes=0",
                   "--policy.horizon=1", "--policy.n_action_steps=1", "--optim.batch_size=4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert run_cli("export", "--policy", run, "--out", tmp_path / "m.onnx").returncode == 0


def test_export_loads_in_lerobot_with_equal_arrays(tmp_path, lerobot_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, _ = lerobot_dataset
    store, back = tmp_path / "s.zarr", tmp_path / "back"
    assert run_cli("data", "import", root, store, "--from", "lerobot").returncode == 0
    proc = run_cli("data", "export", store, back, "--to", "lerobot", "--repo-id", "test/back")
    assert proc.returncode == 0, proc.stderr
    a = LeRobotDataset("test/ds", root=root)
    b = LeRobotDataset("test/back", root=back)
    assert b.meta.fps == 20 and b.num_episodes == 3 and b.meta.video_keys == ["observation.images.front"]
    ha, hb = a.hf_dataset.with_format("numpy"), b.hf_dataset.with_format("numpy")
    for col in ha.column_names:
        np.testing.assert_array_equal(np.asarray(hb[col]), np.asarray(ha[col]), err_msg=col)
    assert list(b.meta.tasks.index) == sorted(set(TASKS), key=TASKS.index)


def test_store_keys_survive_a_round_trip(tmp_path, push_store):
    out, back = tmp_path / "lr", tmp_path / "back.zarr"
    assert run_cli("data", "export", push_store, out, "--to", "lerobot").returncode == 0
    assert run_cli("data", "import", out, back, "--from", "lerobot").returncode == 0
    a, b = EpisodeStore(push_store), EpisodeStore(back)
    assert [e.length for e in a.episodes()] == [e.length for e in b.episodes()]
    assert [e.success for e in a.episodes()] == [e.success for e in b.episodes()]
    for k in a.keys:
        assert a.info.features[k].shape == b.info.features[k].shape, k
        if k == "timestamp":  # LeRobot keeps float32 seconds
            np.testing.assert_allclose(b.read(k), a.read(k), atol=1e-6)
        else:
            np.testing.assert_array_equal(b.read(k), a.read(k), err_msg=k)
        assert b.read(k).dtype == a.read(k).dtype, k


def test_bad_lerobot_input_is_one_line(tmp_path, push_store):
    assert_one_line_error(
        run_cli("data", "import", tmp_path, tmp_path / "x.zarr", "--from", "lerobot"),
        "not a LeRobot v3 dataset",
    )
    (tmp_path / "exists").mkdir()
    assert_one_line_error(
        run_cli("data", "export", push_store, tmp_path / "exists", "--to", "lerobot"), "already exists"
    )
