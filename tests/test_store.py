"""The episode store: round trips, streaming, the single-writer rule, readers during writes, spec errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from robostack.data import EpisodeStore, EpisodeWriter, FeatureSpec, StoreInfo
from robostack.errors import SpecError, StoreError

from conftest import random_episode

FEATURES = {
    "obs/state": FeatureSpec("float32", (5,), names=list("abcde")),
    "obs/image_front": FeatureSpec("uint8", (12, 16, 3)),
    "action": FeatureSpec("float32", (3,)),
    "reward": FeatureSpec("float32", ()),
    "is_intervention": FeatureSpec("bool", ()),
    "timestamp": FeatureSpec("float64", ()),
}


def make_store(path, **kw):
    return EpisodeWriter.create(path, StoreInfo(control_rate_hz=10.0, features=FEATURES, robot="test"), **kw)


def test_round_trip_bulk_and_streamed(tmp_path):
    rng = np.random.default_rng(0)
    eps = [random_episode(FEATURES, int(n), rng) for n in rng.integers(1, 900, 12)]
    with make_store(tmp_path / "s.zarr") as w:
        for i, ep in enumerate(eps[:8]):
            assert w.add_episode(ep, success=i % 2 == 0, task="t", seed=i) == i
        for ep in eps[8:]:
            w.begin_episode()
            for t in range(ep["action"].shape[0]):
                w.add_step({k: v[t] for k, v in ep.items()}, flush_rows=7)
            w.end_episode(success=True, source="real", task="other", quality="human")
    store = EpisodeStore(tmp_path / "s.zarr")
    assert store.n_episodes == 12
    assert store.n_steps == sum(e["action"].shape[0] for e in eps)
    for i, ep in enumerate(eps):
        got = store.read_episode(i)
        for k in FEATURES:
            np.testing.assert_array_equal(got[k], ep[k])
            assert got[k].dtype == np.dtype(FEATURES[k].dtype)
    metas = store.episodes()
    assert [m.success for m in metas[:4]] == [True, False, True, False]
    assert metas[9].source == "real" and metas[9].task == "other" and metas[9].quality == "human"
    assert metas[3].seed == 3
    assert store.info.features["obs/state"].names == list("abcde")


def test_closed_store_has_exact_diffusion_policy_layout(tmp_path):
    rng = np.random.default_rng(1)
    with make_store(tmp_path / "s.zarr") as w:
        for n in (30, 40, 50):
            w.add_episode(random_episode(FEATURES, n, rng))
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")  # a plain zarr reader, as Diffusion Policy's
    ends = root["meta/episode_ends"][:]
    assert ends.tolist() == [30, 70, 120] and ends.dtype == np.int64
    for k in FEATURES:
        assert root["data/" + k].shape[0] == 120


def test_second_writer_is_refused(tmp_path):
    w = make_store(tmp_path / "s.zarr")
    try:
        with pytest.raises(StoreError, match="another writer"):
            EpisodeWriter.open(tmp_path / "s.zarr")
    finally:
        w.close()
    EpisodeWriter.open(tmp_path / "s.zarr").close()  # free again after close


def test_reader_sees_only_committed_episodes(tmp_path):
    rng = np.random.default_rng(2)
    w = make_store(tmp_path / "s.zarr")
    w.add_episode(random_episode(FEATURES, 25, rng))
    w.begin_episode()
    ep = random_episode(FEATURES, 40, rng)
    for t in range(40):
        w.add_step({k: v[t] for k, v in ep.items()}, flush_rows=5)  # rows hit the disk as they come
    reader = EpisodeStore(tmp_path / "s.zarr")
    assert reader.n_episodes == 1 and reader.n_steps == 25
    assert reader.group["data/action"].shape[0] > 25  # the tail is on disk but not visible
    w.end_episode()
    assert EpisodeStore(tmp_path / "s.zarr").n_episodes == 2
    w.close()


def test_discarded_episode_leaves_no_trace(tmp_path):
    rng = np.random.default_rng(3)
    with make_store(tmp_path / "s.zarr") as w:
        a = random_episode(FEATURES, 20, rng)
        w.add_episode(a)
        w.begin_episode()
        junk = random_episode(FEATURES, 15, rng)
        for t in range(15):
            w.add_step({k: v[t] for k, v in junk.items()}, flush_rows=4)
        w.discard_episode()
        b = random_episode(FEATURES, 9, rng)
        w.add_episode(b)
    s = EpisodeStore(tmp_path / "s.zarr")
    assert s.episode_ends.tolist() == [20, 29]
    np.testing.assert_array_equal(s.read_episode(1)["action"], b["action"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ep: ep.pop("action"), "missing key(s) action"),
        (lambda ep: ep.__setitem__("action", np.zeros((10, 4), np.float32)), "per-step shape (4,)"),
        (
            lambda ep: ep.__setitem__("obs/image_front", np.zeros((10, 12, 16, 3), np.float32)),
            "cannot be stored",
        ),
        (lambda ep: ep.__setitem__("reward", np.zeros(11, np.float32)), "11 steps"),
        (lambda ep: ep.__setitem__("extra", np.zeros(10)), "not declared"),
    ],
)
def test_spec_errors_name_the_key_and_write_nothing(tmp_path, mutate, message):
    rng = np.random.default_rng(4)
    with make_store(tmp_path / "s.zarr") as w:
        w.add_episode(random_episode(FEATURES, 10, rng))
        bad = random_episode(FEATURES, 10, rng)
        mutate(bad)
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
            w.add_episode(bad)
    assert EpisodeStore(tmp_path / "s.zarr").n_episodes == 1


def test_not_a_store_and_existing_store_errors(tmp_path):
    with pytest.raises(StoreError, match="not a zarr store"):
        EpisodeStore(tmp_path)
    make_store(tmp_path / "s.zarr").close()
    with pytest.raises(StoreError, match="already exists"):
        make_store(tmp_path / "s.zarr")


def test_append_resumes_and_many_episodes_cross_ends_chunks(tmp_path, monkeypatch):
    import robostack.data.store as store_mod

    monkeypatch.setattr(store_mod, "ENDS_CHUNK", 4)  # cross several episode_ends chunks in a small test
    rng = np.random.default_rng(5)
    eps = []
    for _ in range(3):
        with EpisodeWriter.open(tmp_path / "s.zarr") if eps else make_store(tmp_path / "s.zarr") as w:
            for _ in range(5):
                eps.append(random_episode(FEATURES, int(rng.integers(1, 30)), rng))
                w.add_episode(eps[-1])
    s = EpisodeStore(tmp_path / "s.zarr")
    assert s.n_episodes == 15
    for i in (0, 4, 5, 14):
        np.testing.assert_array_equal(s.read_episode(i)["obs/state"], eps[i]["obs/state"])


def test_creation_is_all_or_nothing_and_never_deletes_foreign_files(tmp_path, monkeypatch):
    import os

    import robostack.data.store as store_mod

    path = tmp_path / "s.zarr"
    real_replace = os.replace

    def killed_before_root(src, dst):  # a kill between moving the arrays in and moving the root zarr.json in
        if Path(dst) == path / "zarr.json":
            raise RuntimeError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", killed_before_root)
    with pytest.raises(RuntimeError, match="killed"):
        make_store(path)
    monkeypatch.setattr(store_mod.os, "replace", real_replace)
    assert (path / "data").is_dir() and (path / "meta").is_dir()
    with pytest.raises(
        StoreError, match="not a zarr store"
    ):  # a half-made store is no store, not a broken one
        EpisodeStore(path)
    rng = np.random.default_rng(0)
    with make_store(path) as w:  # creating again cleans up the killed creation's leftovers
        w.add_episode(random_episode(FEATURES, 7, rng))
    assert EpisodeStore(path).n_episodes == 1
    assert sorted(p.name for p in path.iterdir()) == [".robostack.lock", "data", "meta", "zarr.json"]
    (path / ".robostack.creating").mkdir()  # as a kill just after the root zarr.json landed leaves them
    (path / ".robostack.creating-marker").touch()
    EpisodeWriter.open(path).close()
    assert sorted(p.name for p in path.iterdir()) == [".robostack.lock", "data", "meta", "zarr.json"]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not empty and not a store"):
        make_store(mine)
    assert (mine / "notes.txt").read_text() == "keep me"
