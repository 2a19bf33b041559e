"""Simulation suite: specs, determinism, replay, expert success, demo generation and rendering through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robostack.data import EpisodeStore
from robostack.errors import RobostackError
from robostack.sim import make_task, task_names
from robostack.sim.parallel import generate_episodes
from robostack.sim.push import PushExpert

from conftest import assert_one_line_error, run_cli


def push_demos(out, *extra: str):
    """One push demonstration into ``out`` through the CLI, with extra arguments."""
    return run_cli("sim", "demos", "--task", "push", "--episodes", "1", "--out", out, *extra)


def test_sim_list_shows_every_task_and_its_spec():
    out = json.loads(run_cli("sim", "list", "--json", check=True).stdout)
    by_name = {t["name"]: t for t in out}
    assert set(by_name) == {"push", "lift", "can"}
    assert by_name["push"]["action"]["shape"] == [2] and by_name["push"]["control_rate_hz"] == 20.0
    assert by_name["lift"]["obs"]["object"]["shape"] == [10]
    assert by_name["can"]["obs"]["object"]["shape"] == [14]
    assert "obs/state" in run_cli("sim", "list", check=True).stdout


def test_unknown_task_and_bad_arguments_are_one_line(tmp_path):
    assert_one_line_error(
        run_cli("sim", "demos", "--task", "fly", "--episodes", "1", "--out", tmp_path / "x.zarr"),
        "unknown task 'fly'",
    )
    assert_one_line_error(push_demos(tmp_path / "x.zarr", "--quality", "great"), "unknown quality")
    with pytest.raises(RobostackError, match="choose from push, lift, can"):
        make_task("fly")


def test_push_is_deterministic_bit_for_bit():
    a = list(generate_episodes("push", [7, 8], "noisy"))
    b = list(generate_episodes("push", [7, 8], "noisy"))
    for ea, eb in zip(a, b, strict=True):
        assert ea.data.keys() == eb.data.keys()
        for k in ea.data:
            assert ea.data[k].tobytes() == eb.data[k].tobytes(), k
    assert a[0].data["obs/object"][0].tobytes() != a[1].data["obs/object"][0].tobytes()


def test_push_expert_succeeds_and_is_fast():
    import time

    eps = list(generate_episodes("push", list(range(40)), "expert"))
    assert np.mean([e.success for e in eps]) >= 0.95
    task = make_task("push")
    task.reset(seed=0)
    t0 = time.perf_counter()
    for i in range(2000):
        task.step(np.array([np.sin(i / 10), np.cos(i / 10)], np.float32))
    assert 2000 / (time.perf_counter() - t0) > 2000  # env steps/s on one core


def test_push_expert_is_multimodal():
    # Paths that must go around the block pick a side at random per episode: both sides appear.
    sides = set()
    for e in generate_episodes("push", list(range(30)), "expert"):
        p, o = e.data["obs/state"][:, :2], e.data["obs/object"]
        u = o[0, 4:6] - o[0, :2]
        n = np.array([-u[1], u[0]]) / np.linalg.norm(u)
        across = (p - o[:, :2]) @ n
        if np.abs(across).max() > 0.08:
            sides.add(int(np.sign(across[np.argmax(np.abs(across))])))
    assert sides == {-1, 1}


def test_quality_tiers_differ():
    rates = {
        q: np.mean([e.success for e in generate_episodes("push", list(range(100, 120)), q)])
        for q in ("expert", "noisy", "random")
    }
    assert (rates["expert"] >= 0.95 and rates["random"] <= 0.2 and rates["noisy"] < 1.0) or rates[
        "noisy"
    ] > rates["random"]
    mixed = list(generate_episodes("push", list(range(200, 230)), "mixed"))
    assert len({e.tier for e in mixed}) >= 2


def test_demos_cli_appends_and_replay_is_exact(tmp_path):
    out = tmp_path / "d.zarr"
    proc = run_cli(
        "sim", "demos", "--task", "push", "--episodes", "4", "--out", out, "--workers", "2", check=True
    )
    assert "success" in proc.stdout and "env steps/s" in proc.stdout
    run_cli(
        "sim", "demos", "--task", "push", "--episodes", "3", "--quality", "noisy", "--out", out, check=True
    )
    store = EpisodeStore(out)
    assert store.n_episodes == 7
    assert [e.seed for e in store.episodes()] == list(range(7))  # appending continues the seeds
    assert [e.quality for e in store.episodes()][-3:] == ["noisy"] * 3
    for i in (0, 5):
        proc = run_cli("sim", "replay", out, "--episode", i, "--tolerance", "0", check=True)
        assert "max state deviation 0" in proc.stdout and "deterministic" in proc.stdout
    assert_one_line_error(run_cli("sim", "replay", out, "--episode", 99), "out of range")


def test_demos_into_store_of_another_task_is_refused(tmp_path, push_store):
    import shutil

    dst = tmp_path / "p.zarr"
    shutil.copytree(push_store, dst)
    assert_one_line_error(
        run_cli("sim", "demos", "--task", "lift", "--episodes", "1", "--out", dst), "holds different features"
    )
    assert EpisodeStore(dst).n_episodes == 20


def test_render_push_episode_to_mp4(tmp_path, push_store):
    out = tmp_path / "ep.mp4"
    proc = run_cli(
        "sim", "render", push_store, "--episode", "1", "--out", out, "--width", "160", "--height", "120"
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000
    import imageio.v3 as iio

    frames = iio.imread(out)
    assert (
        frames.shape[1:] == (120, 160, 3) and frames.shape[0] == EpisodeStore(push_store).episodes()[1].length
    )


@pytest.mark.robosuite
@pytest.mark.parametrize(("task", "n"), [("lift", 4), ("can", 2)])
def test_robosuite_expert_succeeds_and_replays(tmp_path, task, n):
    out = tmp_path / f"{task}.zarr"
    proc = run_cli(
        "sim", "demos", "--task", task, "--episodes", n, "--out", out, "--workers", "2", check=True
    )
    store = EpisodeStore(out)
    assert all(e.success for e in store.episodes()), proc.stdout
    assert store.info.features["obs/state"].shape == (9,)
    proc = run_cli("sim", "replay", out, "--episode", "0", "--tolerance", "1e-6")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.robosuite
def test_robosuite_same_seed_same_episode():
    a = next(generate_episodes("lift", [3], "expert"))
    b = next(generate_episodes("lift", [3], "expert"))
    for k in a.data:
        assert a.data[k].tobytes() == b.data[k].tobytes(), k
    assert task_names() == ["push", "lift", "can"]


@pytest.mark.robosuite
def test_robosuite_cameras_record_and_render(tmp_path):
    out = tmp_path / "cam.zarr"
    run_cli(
        "sim", "demos", "--task", "lift", "--episodes", "1", "--cameras", "agentview", "--image-size", "64",
        "--out", out, check=True,
    )  # fmt: skip
    store = EpisodeStore(out)
    img = store.read("obs/image_agentview")
    assert img.dtype == np.uint8 and img.shape[1:] == (64, 64, 3)
    assert img.std() > 5  # a real rendered scene, not a blank buffer
    assert store.episodes()[0].success
    video = tmp_path / "lift.mp4"
    proc = run_cli("sim", "render", out, "--out", video, "--width", "128", "--height", "96")
    assert proc.returncode == 0, proc.stderr
    assert video.stat().st_size > 1000


@pytest.mark.robosuite
def test_robosuite_camera_scene_renders_without_msaa_or_mirrors():
    from robostack.sim.robosuite_tasks import RobosuiteTask

    task = RobosuiteTask("lift", cameras=("agentview",), image_size=32)
    try:
        for seed in (0, 1):  # every reset rebuilds the sim: the settings must survive it
            obs, _ = task.reset(seed=seed)
            model = task.env.sim.model._model
            assert model.vis.quality.offsamples == 0
            assert model.nmat > 0 and not model.mat_reflectance.any()
            assert obs["image_agentview"].std() > 5
    finally:
        task.close()


def test_dart_demos_record_expert_labels_and_replay_exactly(tmp_path):
    out = tmp_path / "dart.zarr"
    run_cli(
        "sim", "demos", "--task", "push", "--episodes", "3", "--quality", "dart", "--out", out, check=True
    )
    store = EpisodeStore(out)
    assert "executed_action" in store.keys and [e.quality for e in store.episodes()] == ["dart"] * 3
    for i in range(3):
        d = store.read_episode(i, ["obs/state", "obs/object", "action", "executed_action"])
        assert np.abs(d["action"] - d["executed_action"]).mean() > 0.05  # the noise was executed...
        # ...and every recorded label is the clean expert's command in the state the noise led to.
        labels = {
            side: np.stack(
                [
                    PushExpert(side).act({"state": s, "object": o})
                    for s, o in zip(d["obs/state"], d["obs/object"], strict=True)
                ]
            )
            for side in (-1, 1)
        }
        assert min(np.abs(lab - d["action"]).max() for lab in labels.values()) < 1e-6
        proc = run_cli("sim", "replay", out, "--episode", i, "--tolerance", "0", check=True)
        assert "max state deviation 0" in proc.stdout
    # A store has one set of features: plain expert episodes (no executed_action) cannot be appended to it.
    assert_one_line_error(push_demos(out), "executed_action")
    assert_one_line_error(push_demos(out, "--quality", "dart", "--dart-noise", "2"), "--dart-noise")
    assert_one_line_error(push_demos(out, "--dart-noise", "0.1"), "only applies to --quality dart")


def test_recovery_demos_flag_their_perturbations_and_train_only_on_the_expert(tmp_path):
    from robostack.data.buffer import EpisodeFilter
    from robostack.data.schema import QUALITIES
    from robostack.sim.quality import MIXES, TIERS
    from robostack.train.data import load_training_data

    assert set(TIERS) - set(MIXES) <= set(QUALITIES)  # every tier an episode is generated with can be stored
    out = tmp_path / "recovery.zarr"
    run_cli(
        "sim", "demos", "--task", "push", "--episodes", "6", "--quality", "recovery", "--out", out, check=True
    )
    store = EpisodeStore(out)
    assert "imitate" in store.keys and "executed_action" not in store.keys
    assert all(e.quality == "recovery" and e.success for e in store.episodes())
    flagged = 0
    for i in range(6):
        d = store.read_episode(i, ["obs/state", "obs/object", "action", "imitate"])
        ok = d["imitate"]
        flagged += int((~ok).sum())
        # Imitated steps are the clean expert's command in the state reached; flagged ones are a held burst.
        expert = {
            side: np.stack(
                [
                    PushExpert(side).act({"state": s, "object": o})
                    for s, o in zip(d["obs/state"], d["obs/object"], strict=True)
                ]
            )
            for side in (-1, 1)
        }
        assert min(np.abs(e[ok] - d["action"][ok]).max() for e in expert.values()) < 1e-6
        assert min(np.abs(e[~ok] - d["action"][~ok]).max(initial=1.0) for e in expert.values()) > 0.05
    assert flagged >= 4  # at least one burst in six episodes (the seeds are fixed, so this is deterministic)
    proc = run_cli("sim", "replay", out, "--episode", 0, "--tolerance", "0", check=True)
    assert "max state deviation 0" in proc.stdout
    # The action range a policy learns in comes from the expert's steps only.
    buf, stats = load_training_data(store, ["obs/state", "action"], EpisodeFilter())
    imitated = buf.data["action"][buf.data["imitate"]]
    np.testing.assert_allclose(stats["action"].max, imitated.max(0), rtol=1e-6)
    assert stats["action"].count == imitated.shape[0] < buf.n_steps
    assert_one_line_error(push_demos(out), "imitate")  # a store holds one set of features
