"""Appends deterministic episodes to a store until killed (used by the kill -9 test).

Episode i's content is a pure function of i, so after any crash the test can check every committed episode
byte for byte. Even episodes are streamed step by step (rows reach disk before the commit), odd ones bulk-added.
"""

from __future__ import annotations

import sys

import numpy as np

from robostack.data import EpisodeWriter, FeatureSpec

FEATURES = {
    "obs/state": FeatureSpec("float32", (7,)),
    "obs/image_wrist": FeatureSpec("uint8", (24, 32, 3)),
    "action": FeatureSpec("float32", (3,)),
    "reward": FeatureSpec("float32", ()),
    "is_intervention": FeatureSpec("bool", ()),
    "timestamp": FeatureSpec("float64", ()),
}


def episode(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + i)
    n = int(rng.integers(5, 400))
    return {
        "obs/state": rng.normal(size=(n, 7)).astype(np.float32),
        "obs/image_wrist": rng.integers(0, 256, (n, 24, 32, 3), dtype=np.uint8),
        "action": rng.normal(size=(n, 3)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "is_intervention": rng.random(n) < 0.2,
        "timestamp": np.arange(n) / 30.0,
    }


def main(path: str) -> None:
    w = EpisodeWriter.open(path)
    print("ready", flush=True)  # the test times most kills from here, so they land mid-write
    i = w.n_episodes
    while True:
        ep = episode(i)
        if i % 2 == 0:
            w.begin_episode()
            for t in range(ep["action"].shape[0]):
                w.add_step({k: v[t] for k, v in ep.items()}, flush_rows=16)
            w.end_episode(success=bool(i % 3), seed=i, task="crash")
        else:
            w.add_episode(ep, success=bool(i % 3), seed=i, task="crash")
        i += 1


if __name__ == "__main__":
    main(sys.argv[1])
