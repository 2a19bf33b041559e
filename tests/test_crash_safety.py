"""kill -9 at random moments while recording: every time the store validates, every committed episode reads
back identical to what was written, and appending resumes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robostack.data import EpisodeStore, EpisodeWriter, StoreInfo
from robostack.data.validate import validate_store

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from crash_writer import FEATURES, episode

KILLS = 25


def test_kill_minus_nine_never_loses_committed_data(tmp_path):
    path = tmp_path / "crash.zarr"
    EpisodeWriter.create(path, StoreInfo(control_rate_hz=30.0, features=FEATURES)).close()
    rng = np.random.default_rng(0)
    helper = Path(__file__).parent / "helpers" / "crash_writer.py"
    counts, tails, expected = [], 0, []
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(helper), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if rng.random() < 0.2:  # during start-up: imports, opening, dropping the previous tail
            time.sleep(float(rng.uniform(0.0, 1.0)))
        else:  # while writing: mid-episode, mid-flush, mid-commit
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(float(rng.uniform(0.05, 1.2)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        findings = validate_store(path)
        assert not [f for f in findings if f.severity == "error"], findings
        tails += any("uncommitted" in f.message for f in findings)
        store = EpisodeStore(path)
        n = store.n_episodes
        while len(expected) < n:
            expected.append(episode(len(expected)))
        assert [m.seed for m in store.episodes()] == list(range(n))
        assert store.episode_ends.tolist() == np.cumsum([e["action"].shape[0] for e in expected[:n]]).tolist()
        for k in FEATURES:  # every committed row of every key, byte for byte
            want = np.concatenate([e[k] for e in expected[:n]]) if n else np.zeros(0)
            assert store.read(k).tobytes() == want.tobytes(), k
        counts.append(n)
    assert counts == sorted(counts)  # nothing committed was ever lost
    resumed = sum(b > a for a, b in zip([0, *counts], counts, strict=False))
    assert resumed >= KILLS // 4, counts  # appending resumed after crashes (progress depends on machine load)
    assert tails >= KILLS // 4, tails  # many kills really hit a half-written episode
