"""``robostack data validate|info`` on sound and damaged stores: one clear line per problem, never a traceback,
and --repair drops an uncommitted tail and nothing else."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from robostack.data import EpisodeStore, EpisodeWriter

from conftest import assert_one_line_error, random_episode, run_cli


@pytest.fixture
def store(tmp_path, push_store):
    dst = tmp_path / "s.zarr"
    shutil.copytree(push_store, dst)
    return dst


def test_sound_store_validates_and_info_reports(push_store):
    proc = run_cli("data", "validate", push_store)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
    info = json.loads(run_cli("data", "info", push_store, "--json", check=True).stdout)
    assert info["episodes"] == 20 and info["success_rate"] == 1.0
    assert info["control_rate_hz"] == 20.0 and info["sources"] == {"sim": 20}
    assert info["keys"]["action"] == {"shape": [info["steps"], 2], "dtype": "float32"}
    assert info["intervention_rate"] == 0.0
    text = run_cli("data", "info", push_store, check=True).stdout
    assert "success rate     100.0%" in text and "obs/object" in text


def test_uncommitted_tail_is_sound_and_repair_drops_only_it(store):
    before = EpisodeStore(store)
    n_steps, ends = before.n_steps, before.episode_ends.copy()
    first = before.read_episode(0)
    w = EpisodeWriter.open(store)
    ep = random_episode(before.info.features, 300, np.random.default_rng(0))
    w.begin_episode()
    for t in range(300):
        w.add_step({k: v[t] for k, v in ep.items()}, flush_rows=50)
    w._lock.release()  # simulate a writer that died mid-episode (no close)
    proc = run_cli("data", "validate", store)
    assert proc.returncode == 0, proc.stdout
    assert "uncommitted row(s)" in proc.stdout
    proc = run_cli("data", "validate", store, "--repair")
    assert proc.returncode == 0 and "dropped" in proc.stdout
    after = EpisodeStore(store)
    assert after.episode_ends.tolist() == ends.tolist()
    assert zarr.open_group(str(store), mode="r")["data/action"].shape[0] == n_steps
    for k, v in first.items():
        np.testing.assert_array_equal(after.read_episode(0)[k], v)
    assert "uncommitted row" not in run_cli("data", "validate", store).stdout


def _set_ends(store, values):
    arr = zarr.open_array(str(store / "meta/episode_ends"), mode="r+")
    arr[: len(values)] = values


def _chunk_file(store, key):
    return sorted((store / "data" / key / "c").rglob("*"), key=lambda p: (len(p.parts), str(p)))[-1]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda s: _set_ends(s, [5, 3]), "not strictly increasing"),
        (
            lambda s: shutil.rmtree(s / "data" / "action"),
            "data/action: declared in the feature specs but missing",
        ),
        (
            lambda s: _chunk_file(s, "obs/state").write_bytes(b"\x02\x01garbage"),
            "data/obs/state: unreadable chunk",
        ),
        (lambda s: _chunk_file(s, "action").unlink(), "data/action: chunk file(s) missing"),
        (
            lambda s: zarr.open_group(str(s), mode="r+").create_array(
                "data/reward", shape=(10,), dtype="float64", overwrite=True
            ),
            "data/reward: dtype float64, the spec says float32",
        ),
        (lambda s: (s / "zarr.json").write_text("{not json"), "unreadable zarr metadata"),
        (lambda s: shutil.rmtree(s / "meta" / "episode_ends"), "missing 'meta/episode_ends'"),
    ],
    ids=[
        "ends-order",
        "missing-key",
        "corrupt-chunk",
        "deleted-chunk",
        "wrong-dtype",
        "bad-metadata",
        "no-ends",
    ],
)
def test_damaged_store_gets_one_clear_line_per_problem(store, damage, expected):
    damage(store)
    proc = run_cli("data", "validate", store)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert expected in proc.stdout, proc.stdout
    info = run_cli("data", "info", store)
    if info.returncode != 0:  # info may still work on a partly damaged store, but never with a traceback
        assert_one_line_error(info)


def test_paths_that_are_not_stores(tmp_path):
    proc = run_cli("data", "validate", tmp_path / "nope.zarr")
    assert proc.returncode == 1 and "no such file" in proc.stdout
    (tmp_path / "plain").mkdir()
    assert_one_line_error(run_cli("data", "info", tmp_path / "plain"), "not a zarr store")
    (tmp_path / "file.txt").write_text("hello")
    assert_one_line_error(run_cli("data", "info", tmp_path / "file.txt"), "not a zarr store")
    assert_one_line_error(run_cli("data", "merge", tmp_path / "plain", "--out", tmp_path / "m.zarr"))


def test_unknown_option_is_one_line(tmp_path):
    proc = run_cli("data", "info")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
