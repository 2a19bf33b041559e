"""A damaged commit record never costs committed data: every writer refuses it and leaves every byte as it was.

``meta/episode_ends`` decides which rows are committed. Before the check, an end that was too small made an append
truncate committed rows, and one that was too large made ``--repair`` keep (or an append pad) rows that were never
committed. Each command here runs through the CLI's entry point on a store damaged in one of those ways.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import zarr

from robostack.data import EpisodeStore, EpisodeWriter

from conftest import REPO, ROBOSTACK, assert_one_line_error, random_episode, run_cli, run_cli_here


def snapshot(root) -> dict[str, str]:
    """Every file (lock file included) and folder of the store, with a hash of each file's bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _ends(store) -> np.ndarray:
    return np.asarray(zarr.open_array(str(store / "meta/episode_ends"), mode="r")[:])


def _set_last_end(store, value: int) -> None:
    arr = zarr.open_array(str(store / "meta/episode_ends"), mode="r+")
    arr[-1] = value


def _add_uncommitted_tail(store, rows: int) -> None:
    """Rows past the last commit, as a writer killed mid-episode leaves them."""
    w = EpisodeWriter.open(store)
    ep = random_episode(w.info.features, rows, np.random.default_rng(1))
    w.begin_episode()
    for t in range(rows):
        w.add_step({k: v[t] for k, v in ep.items()}, flush_rows=10)
    w._lock.release()


def _damage(store, kind: str) -> None:
    ends = _ends(store)
    if kind == "end-too-small":
        _set_last_end(store, int(ends[-1]) - 7)
    elif kind == "end-past-arrays":
        _set_last_end(store, int(ends[-1]) + 10_000)
    elif kind == "end-inside-tail":  # within the arrays' rows, so only the episode table can tell
        _add_uncommitted_tail(store, 40)
        _set_last_end(store, int(ends[-1]) + 25)
    elif kind == "non-monotonic":
        _set_last_end(store, int(ends[-2]) - 3)
    elif kind == "negative":
        _set_last_end(store, -5)
    else:
        raise AssertionError(kind)


KINDS = ["end-too-small", "end-past-arrays", "end-inside-tail", "non-monotonic", "negative"]
EXPECTED = {
    "end-too-small": "disagrees with the episode table",
    "end-past-arrays": "rows, but the commit record's last end is",
    "end-inside-tail": "disagrees with the episode table",
    "non-monotonic": "not strictly increasing",
    "negative": "is negative",
}


@pytest.fixture
def store(tmp_path, push_store):
    dst = tmp_path / "s.zarr"
    shutil.copytree(push_store, dst)
    return dst


@pytest.mark.parametrize("kind", KINDS)
def test_every_writer_refuses_a_damaged_commit_record_and_changes_nothing(tmp_path, store, kind):
    _damage(store, kind)
    before = snapshot(store)

    proc = run_cli_here("sim", "demos", "--task", "push", "--episodes", "1", "--out", store, "--workers", "1")
    assert_one_line_error(proc, "refusing to append", EXPECTED[kind], "nothing was changed")
    assert snapshot(store) == before

    proc = run_cli_here("data", "validate", store, "--repair")
    assert proc.returncode == 1
    assert EXPECTED[kind] in proc.stdout and "repair not attempted" in proc.stdout, proc.stdout
    assert "repaired" not in proc.stdout
    assert snapshot(store) == before

    out = tmp_path / "merged.zarr"
    proc = run_cli_here("data", "merge", store, "--out", out)
    assert_one_line_error(proc, "refusing to merge", EXPECTED[kind])
    assert not out.exists()
    assert snapshot(store) == before

    # The library's own entry points refuse the same way (what every command above goes through).
    from robostack.data.validate import repair_store
    from robostack.errors import StoreError

    with pytest.raises(StoreError, match="refusing"):
        EpisodeWriter.open(store)
    with pytest.raises(StoreError, match="refusing to repair"):
        repair_store(store)
    assert snapshot(store) == before


def test_refusal_through_a_real_process(store):
    """The same refusal across the process boundary, as a user's shell sees it."""
    _damage(store, "end-too-small")
    before = snapshot(store)
    proc = run_cli("sim", "demos", "--task", "push", "--episodes", "1", "--out", store)
    assert_one_line_error(proc, "refusing to append", "disagrees with the episode table")
    assert snapshot(store) == before


def test_repair_still_drops_a_tail_past_a_sound_record(store):
    committed = EpisodeStore(store)
    n_steps = committed.n_steps
    first = committed.read_episode(3)
    _add_uncommitted_tail(store, 40)
    tail = zarr.open_group(str(store), mode="r")["data/action"].shape[0] - n_steps  # 40 + capacity growth
    assert tail >= 40
    proc = run_cli_here("data", "validate", store, "--repair")
    assert (
        proc.returncode == 0 and f"data/action: dropped {tail} uncommitted row(s)" in proc.stdout
    ), proc.stdout
    after = EpisodeStore(store)
    assert after.n_steps == n_steps
    assert zarr.open_group(str(store), mode="r")["data/action"].shape[0] == n_steps
    for k, v in first.items():
        np.testing.assert_array_equal(after.read_episode(3)[k], v)


def test_repair_refuses_a_store_with_other_errors(store):
    chunk = sorted((store / "data" / "obs/state" / "c").rglob("*"))[-1]
    chunk.write_bytes(b"\x02\x01garbage")
    before = snapshot(store)
    proc = run_cli_here("data", "validate", store, "--repair")
    assert proc.returncode == 1 and "repair not attempted" in proc.stdout, proc.stdout
    assert snapshot(store) == before


def test_one_writer_across_two_cli_processes(tmp_path):
    """A second ``robostack`` process cannot write a store another one is writing; once the first dies, it can."""
    store = tmp_path / "locked.zarr"
    first = subprocess.Popen(
        [
            *ROBOSTACK,
            "sim",
            "demos",
            "--task",
            "push",
            "--episodes",
            "2000",
            "--out",
            str(store),
            "--workers",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lock = store / ".robostack.lock"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (
                lock.is_file()
                and lock.read_text().strip() == str(first.pid)
                and (store / "zarr.json").is_file()
            ):
                break
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        else:
            raise AssertionError("the first writer never took the lock")
        time.sleep(1.0)  # let it pass store creation and start writing episodes
        proc = run_cli("sim", "demos", "--task", "push", "--episodes", "1", "--out", store)
        assert_one_line_error(proc, "another writer holds the store", f"pid {first.pid}")
        proc = run_cli_here("data", "validate", store, "--repair")
        assert proc.returncode != 0 and "another writer holds the store" in proc.stderr, (
            proc.stdout + proc.stderr
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # The killed writer's lock went with it: the store is sound and takes a new writer.
    n = EpisodeStore(store).n_episodes
    run_cli("sim", "demos", "--task", "push", "--episodes", "1", "--out", store, check=True)
    assert EpisodeStore(store).n_episodes == n + 1
    assert run_cli("data", "validate", store).returncode == 0
