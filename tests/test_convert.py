"""Import/export round trips: robomimic HDF5 and Diffusion Policy zarr v2, through the CLI; merging stores."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import zarr

from robostack.data import EpisodeStore

from conftest import assert_one_line_error, run_cli


def write_robomimic(path, n_demos=4, seed=0):
    """A robomimic-layout file with every kind of field robomimic writes (made here, no download)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(n_demos):
            T = int(rng.integers(5, 40))
            g = data.create_group(f"demo_{i}")
            for k, shape, dt in [
                ("robot0_eef_pos", (3,), np.float64),
                ("object", (10,), np.float64),
                ("agentview_image", (8, 8, 3), np.uint8),
            ]:
                arr = (
                    rng.integers(0, 255, (T, *shape)).astype(dt)
                    if dt == np.uint8
                    else rng.normal(size=(T, *shape))
                )
                g.create_dataset(f"obs/{k}", data=arr)
                g.create_dataset(f"next_obs/{k}", data=np.concatenate([arr[1:], arr[-1:]]))
            g.create_dataset("actions", data=rng.uniform(-1, 1, (T, 7)))
            g.create_dataset("rewards", data=np.r_[np.zeros(T - 1), 1.0])
            g.create_dataset("dones", data=np.r_[np.zeros(T - 1, np.int64), 1])
            g.create_dataset("states", data=rng.normal(size=(T, 32)))
            g.attrs["num_samples"] = T
            total += T
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(
            {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "robots": "Panda"}}
        )
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([b"demo_0", b"demo_2", b"demo_3"]))
        mask.create_dataset("valid", data=np.array([b"demo_1"]))


def h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, node: out.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None
        )
        env_args = json.loads(f["data"].attrs["env_args"])
    return out, env_args


def test_robomimic_round_trip_keeps_every_array(tmp_path):
    src = tmp_path / "demo.hdf5"
    write_robomimic(src)
    run_cli("data", "import", src, tmp_path / "s.zarr", "--from", "robomimic", check=True)
    store = EpisodeStore(tmp_path / "s.zarr")
    assert store.n_episodes == 4 and store.info.control_rate_hz == 20.0
    assert {"action", "reward", "terminated", "sim_state", "obs/object", "next_obs/object"} <= set(store.keys)
    assert all(e.success for e in store.episodes())
    assert run_cli("data", "validate", tmp_path / "s.zarr").returncode == 0
    run_cli("data", "export", tmp_path / "s.zarr", tmp_path / "back.hdf5", "--to", "robomimic", check=True)
    a, env_a = h5_arrays(src)
    b, env_b = h5_arrays(tmp_path / "back.hdf5")
    assert env_a == env_b
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sim_store_exports_to_robomimic_that_robomimic_reads(tmp_path, push_store):
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset
    from robomimic.utils.file_utils import get_env_metadata_from_dataset

    out = tmp_path / "push.hdf5"
    run_cli("data", "export", push_store, out, "--to", "robomimic", check=True)
    meta = get_env_metadata_from_dataset(str(out))
    assert meta["env_kwargs"]["control_freq"] == 20.0
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["state", "object"]}})
    ds = SequenceDataset(
        hdf5_path=str(out),
        obs_keys=("state", "object"),
        dataset_keys=("actions",),
        seq_length=4,
        hdf5_cache_mode="all",
        load_next_obs=False,
        filter_by_attribute="successful",
    )
    item = ds[0]
    assert item["actions"].shape == (4, 2) and item["obs"]["object"].shape == (4, 6)
    assert len(ds) == EpisodeStore(push_store).n_steps


@pytest.mark.parametrize("as_zip", [False, True])
def test_diffusion_policy_v2_import_and_export(tmp_path, as_zip):
    rng = np.random.default_rng(0)
    ends = np.array([12, 30, 41])
    path = tmp_path / ("dp.zarr.zip" if as_zip else "dp.zarr")
    store = zarr.storage.ZipStore(path, mode="w") if as_zip else zarr.storage.LocalStore(path)
    root = zarr.open_group(store=store, mode="w", zarr_format=2)
    arrays = {
        "img": rng.integers(0, 255, (41, 6, 6, 3), dtype=np.uint8),
        "state": rng.normal(size=(41, 5)).astype(np.float32),
        "action": rng.normal(size=(41, 2)).astype(np.float32),
    }
    for k, v in arrays.items():
        root.create_array(f"data/{k}", data=v, chunks=(16, *v.shape[1:]))
    root.create_array("meta/episode_ends", data=ends)
    store.close()
    run_cli("data", "import", path, tmp_path / "s.zarr", "--from", "diffusion-policy", check=True)
    s = EpisodeStore(tmp_path / "s.zarr")
    assert s.episode_ends.tolist() == ends.tolist()
    np.testing.assert_array_equal(s.read("obs/image"), arrays["img"])
    np.testing.assert_array_equal(s.read("obs/state"), arrays["state"])
    run_cli(
        "data", "export", tmp_path / "s.zarr", tmp_path / "back.zarr", "--to", "diffusion-policy", check=True
    )
    back = zarr.open_group(str(tmp_path / "back.zarr"), mode="r", zarr_format=2)
    assert back["meta/episode_ends"][:].tolist() == ends.tolist()
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[f"data/{k}"][:], v)


def test_bad_import_sources(tmp_path):
    assert_one_line_error(
        run_cli("data", "import", tmp_path / "none.hdf5", tmp_path / "s.zarr", "--from", "robomimic"),
        "no such file",
    )
    (tmp_path / "junk.hdf5").write_bytes(b"not hdf5 at all")
    assert_one_line_error(
        run_cli("data", "import", tmp_path / "junk.hdf5", tmp_path / "s.zarr", "--from", "robomimic"),
        "not a readable",
    )
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("other")
    assert_one_line_error(
        run_cli("data", "import", tmp_path / "empty.hdf5", tmp_path / "s.zarr", "--from", "robomimic"),
        "no 'data'",
    )
    root = zarr.open_group(str(tmp_path / "dp.zarr"), mode="w", zarr_format=2)
    root.create_array("data/action", data=np.zeros((5, 2), np.float32))
    root.create_array("meta/episode_ends", data=np.array([3, 2]))
    assert_one_line_error(
        run_cli("data", "import", tmp_path / "dp.zarr", tmp_path / "s2.zarr", "--from", "diffusion-policy"),
        "not strictly increasing",
    )
    assert not (tmp_path / "s2.zarr" / "zarr.json").exists()


def test_merge_concatenates_and_refuses_mismatched_stores(tmp_path, push_store):
    run_cli(
        "sim",
        "demos",
        "--task",
        "push",
        "--episodes",
        "3",
        "--quality",
        "random",
        "--out",
        tmp_path / "r.zarr",
        "--seed",
        "100",
        check=True,
    )
    run_cli("data", "merge", push_store, tmp_path / "r.zarr", "--out", tmp_path / "m.zarr", check=True)
    m, a, b = (EpisodeStore(p) for p in (tmp_path / "m.zarr", push_store, tmp_path / "r.zarr"))
    assert m.n_episodes == a.n_episodes + b.n_episodes
    np.testing.assert_array_equal(m.read_episode(a.n_episodes)["action"], b.read_episode(0)["action"])
    assert [e.quality for e in m.episodes()][-3:] == ["random"] * 3
    src = tmp_path / "demo.hdf5"
    write_robomimic(src)
    run_cli("data", "import", src, tmp_path / "rm.zarr", "--from", "robomimic", check=True)
    assert_one_line_error(
        run_cli("data", "merge", push_store, tmp_path / "rm.zarr", "--out", tmp_path / "bad.zarr"),
        "is float64(",
    )
    assert not (tmp_path / "bad.zarr").exists()
    assert_one_line_error(
        run_cli("data", "merge", push_store, "--out", tmp_path / "m.zarr"), "already exists"
    )
