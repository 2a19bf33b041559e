"""``robostack generate`` and ``robostack data quality`` as a user runs them: a trained policy writes replayable
episodes with its fingerprint; the quality table and plot compare stores; bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robostack.data import EpisodeStore
from robostack.eval.dataset_quality import measure, tool_position
from robostack.eval.generate import policy_fingerprint

from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory, push_store):
    out = tmp_path_factory.mktemp("gen") / "bc"
    run_cli(
        "train", "--policy", "gaussian", "--data", push_store, "--out", out, "--steps", "150",
        "--policy.horizon=1", "--policy.n_action_steps=1", "--policy.hidden_dims=[32,32]", "--eval.episodes=0",
        check=True,
    )  # fmt: skip
    return out


def test_generate_writes_replayable_episodes_with_the_policy_fingerprint(tmp_path, bc_run):
    out = tmp_path / "gen.zarr"
    proc = run_cli("generate", "--policy", bc_run, "--task", "push", "--episodes", "3", "--keep", "all",
                   "--out", out, "--seed", "500")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    store = EpisodeStore(out)
    assert store.n_episodes == 3
    assert [e.source for e in store.episodes()] == ["generated"] * 3
    assert [e.quality for e in store.episodes()] == ["policy"] * 3
    assert list(store.episode_field("seed")) == [500, 501, 502]
    fp = policy_fingerprint(bc_run)
    assert store.attrs["provenance"]["config"]["policy_fingerprint"] == fp
    assert store.attrs["generators"][0]["policy_fingerprint"] == fp
    proc = run_cli("sim", "replay", out, "--episode", "2")
    assert proc.returncode == 0 and "deterministic" in proc.stdout, proc.stdout + proc.stderr
    # appending continues after the largest seed, and workers do not change the episodes
    proc = run_cli("generate", "--policy", bc_run, "--task", "push", "--episodes", "2", "--keep", "all",
                   "--out", out, "--workers", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    store = EpisodeStore(out)
    assert list(store.episode_field("seed")) == [500, 501, 502, 503, 504]
    assert len(store.attrs["generators"]) == 2
    again = tmp_path / "again.zarr"
    assert run_cli("generate", "--policy", bc_run, "--task", "push", "--episodes", "2", "--keep", "all",
                   "--out", again, "--seed", "503").returncode == 0  # fmt: skip
    np.testing.assert_array_equal(
        EpisodeStore(again).read("action"), store.read("action", store.episode_starts()[3])
    )


def test_keep_success_stores_only_successes(tmp_path, push_store):
    """A run whose rollouts mostly succeed: the stored episodes are the first successes in seed order."""
    from robostack.eval.generate import GenerateConfig

    run = tmp_path / "dp"
    run_cli(
        "train", "--policy", "gaussian", "--data", push_store, "--out", run, "--steps", "1",
        "--policy.horizon=1", "--policy.n_action_steps=1", "--policy.hidden_dims=[8]", "--eval.episodes=0",
        check=True,
    )  # fmt: skip
    # an untrained policy almost never succeeds: the run gives up with one line and keeps what it found
    proc = run_cli(
        "generate", "--policy", run, "--task", "push", "--episodes", "1", "--out", tmp_path / "x.zarr"
    )
    assert proc.returncode == 1
    assert_one_line_error(proc, "successful episodes in 20 rollouts")
    assert EpisodeStore(tmp_path / "x.zarr").episode_field("success").all()
    with pytest.raises(Exception, match="--keep"):
        GenerateConfig(policy=str(run), task="push", episodes=1, out="y", keep="some")


def test_data_quality_table_json_and_plot(tmp_path, push_store):
    noisy = tmp_path / "noisy.zarr"
    run_cli(
        "sim", "demos", "--task", "push", "--episodes", "6", "--quality", "noisy", "--out", noisy, check=True
    )
    png = tmp_path / "q.png"
    proc = run_cli("data", "quality", push_store, noisy, "--plot", png)
    assert proc.returncode == 0, proc.stderr
    assert "RMS jerk" in proc.stdout and "noisy.zarr" in proc.stdout
    assert png.stat().st_size > 10_000
    proc = run_cli("data", "quality", push_store, noisy, "--json")
    rows = json.loads(proc.stdout)
    expert, noisy_q = rows
    assert noisy_q["rms_jerk"] > 2 * expert["rms_jerk"]  # the noisy tier's actions are rougher
    assert noisy_q["mean_abs_delta_action"] > expert["mean_abs_delta_action"]
    assert expert["sources"] == {"sim": EpisodeStore(push_store).n_episodes}


def test_quality_metrics_on_hand_made_episodes(tmp_path):
    """Path length, |delta a| and phase variance on episodes whose values are known."""
    from robostack.data.schema import FeatureSpec, StoreInfo
    from robostack.data.store import EpisodeWriter

    feats = {
        "obs/state": FeatureSpec("float32", (2,), names=("tool_x", "tool_y")),
        "action": FeatureSpec("float32", (1,)),
    }
    assert tool_position(feats) == ("obs/state", [0, 1])
    with EpisodeWriter.create(tmp_path / "s.zarr", StoreInfo(control_rate_hz=10.0, features=feats)) as w:
        # 3 along x then 4 along y: path length 7; actions ramp by 0.5 per step (|delta a| 0.5), episodes identical but offset
        for offset in (0.0, 1.0):
            pos = np.array([[0, 0], [3, 0], [3, 4]], np.float32)
            act = np.array([[0.0], [0.5], [1.0]], np.float32) + offset
            w.add_episode({"obs/state": pos, "action": act}, success=True, source="sim", task="t", seed=0)
    q = measure(tmp_path / "s.zarr")
    assert q.path_length == pytest.approx(7.0)
    assert q.mean_abs_delta_action == pytest.approx(0.5)
    assert q.phase_variance == pytest.approx(0.25)  # two episodes 1.0 apart at every phase: variance 0.5^2
    assert q.rms_jerk == 0.0 and q.length_mean == 3.0 and q.length_std == 0.0


def test_bad_input_is_one_line(tmp_path, bc_run):
    empty = tmp_path / "empty.zarr"
    from robostack.data.schema import FeatureSpec, StoreInfo
    from robostack.data.store import EpisodeWriter

    EpisodeWriter.create(
        empty, StoreInfo(control_rate_hz=10.0, features={"action": FeatureSpec("float32", (1,))})
    ).close()
    assert_one_line_error(run_cli("data", "quality", empty), "no committed episodes")
    assert_one_line_error(
        run_cli(
            "generate", "--policy", bc_run, "--task", "lift", "--episodes", "1", "--out", tmp_path / "l.zarr"
        ),
        "task 'lift'",
    )
    assert_one_line_error(
        run_cli(
            "generate",
            "--policy",
            tmp_path / "nope",
            "--task",
            "push",
            "--episodes",
            "1",
            "--out",
            tmp_path / "n",
        ),
        "no such policy",
    )
