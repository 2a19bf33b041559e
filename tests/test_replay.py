"""The replay buffer: s' from the next row of the same episode, terminal and truncated last rows, the online ring,
symmetric sampling."""

from __future__ import annotations

import numpy as np
import pytest

from robostack.data import EpisodeWriter, FeatureSpec, StoreInfo
from robostack.data.replay import ReplayBuffer
from robostack.errors import RobostackError

FEATURES = {
    "obs/state": FeatureSpec("float32", (2,)),
    "action": FeatureSpec("float32", (1,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
    "truncated": FeatureSpec("bool", ()),
    "is_intervention": FeatureSpec("bool", ()),
}


def _episode(first: int, n: int, terminated: bool) -> dict[str, np.ndarray]:
    rows = np.arange(first, first + n, dtype=np.float32)
    end = np.zeros(n, bool)
    end[-1] = True
    return {
        "obs/state": np.stack([rows, -rows], 1),
        "action": rows[:, None] / 10,
        "reward": np.where(end & terminated, 1.0, 0.0).astype(np.float32),
        "terminated": end & terminated,
        "truncated": end & (not terminated),
        "is_intervention": rows % 3 == 0,
    }


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.zarr"
    with EpisodeWriter.create(path, StoreInfo(control_rate_hz=10.0, features=FEATURES)) as w:
        w.add_episode(_episode(0, 4, terminated=True), success=True)  # rows 0-3
        w.add_episode(_episode(100, 3, terminated=False), source="real")  # rows 100-102: a time limit
    return path


def test_next_observation_terminal_and_truncated_rows(store):
    replay, dropped = ReplayBuffer.from_stores([store], ["obs/state"], capacity=8)
    assert dropped == 1 and replay.n_offline == 6  # episode 2's last row has no s' and is left out
    a = replay.offline
    s, s2 = a["obs/state"][:, 0], a["next/obs/state"][:, 0]
    np.testing.assert_array_equal(s, [0, 1, 2, 3, 100, 101])
    np.testing.assert_array_equal(s2, [1, 2, 3, 3, 101, 102])  # never 3 -> 100 across episodes
    np.testing.assert_array_equal(a["terminated"], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(a["reward"], [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(a["is_intervention"], [1, 0, 0, 1, 0, 0])
    assert list(a["source"]) == [0, 0, 0, 0, 1, 1]  # sim, real


def test_reward_function_replaces_the_stores(store):
    replay, _ = ReplayBuffer.from_stores(
        [store], ["obs/state"], 8, reward_fn=lambda buf: -buf.data["action"][:, 0]
    )
    np.testing.assert_allclose(replay.offline["reward"], [0, -0.1, -0.2, -0.3, -10, -10.1], rtol=1e-6)


def test_online_ring_and_symmetric_sampling(store):
    replay, _ = ReplayBuffer.from_stores([store], ["obs/state"], capacity=4)
    rng = np.random.default_rng(0)
    with pytest.raises(RobostackError, match="lack"):
        replay.add({"action": np.zeros((1, 1), np.float32)})
    for start in (1000, 1003):  # 6 online transitions into a ring of 4: 1002..1005 remain
        n = 3
        rows = np.arange(start, start + n, dtype=np.float32)
        replay.add({
            "obs/state": np.stack([rows, rows], 1), "next/obs/state": np.stack([rows + 1, rows + 1], 1),
            "action": np.zeros((n, 1), np.float32), "reward": np.zeros(n, np.float32),
            "terminated": np.zeros(n, bool), "truncated": np.zeros(n, bool),
            "is_intervention": np.zeros(n, bool), "source": np.zeros(n, np.uint8),
        })  # fmt: skip
    assert replay.n_online == 4 and len(replay) == 10
    assert sorted(replay.online["obs/state"][:, 0]) == [1002, 1003, 1004, 1005]
    batch = replay.sample_symmetric(64, rng)
    online = batch["obs/state"][:, 0] >= 1000
    assert online.sum() == 32 and set(batch["obs/state"][online, 0]) <= {1002, 1003, 1004, 1005}
    assert len(replay.sample(16, rng)["action"]) == 16


def test_store_without_reward_needs_a_reward_function(tmp_path):
    path = tmp_path / "r.zarr"
    feats = {k: v for k, v in FEATURES.items() if k != "reward"}
    with EpisodeWriter.create(path, StoreInfo(control_rate_hz=10.0, features=feats)) as w:
        w.add_episode({k: v for k, v in _episode(0, 3, True).items() if k != "reward"})
    with pytest.raises(RobostackError, match="no reward"):
        ReplayBuffer.from_stores([path], ["obs/state"], 4)
