"""``robostack finetune`` as a lab runs it: RLIF and SAC from a behaviour-cloned policy, online in simulation; the
online episodes land in a store, the result exports with parity; bad input is refused with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robostack.data import EpisodeStore

from conftest import assert_one_line_error, run_cli, run_cli_here

SMALL = ["--envs", "4", "--learning_starts=100", "--sac.batch_size=32", "--sac.critics=4", "--sac.hidden=[32,32]",
         "--eval_every=0", "--eval_episodes=2", "--log_every=100", "--updates_per_env_step=0.25"]  # fmt: skip


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory, push_store):
    out = tmp_path_factory.mktemp("bc") / "bc"
    run_cli(
        "train", "--policy", "gaussian", "--data", push_store, "--out", out, "--steps", "100",
        "--policy.horizon=1", "--policy.n_action_steps=1", "--policy.hidden_dims=[32,32]", "--eval.episodes=0",
        check=True,
    )  # fmt: skip
    return out


def test_rlif_and_sac_run_end_to_end(tmp_path, bc_run):
    out = tmp_path / "rlif"
    proc = run_cli(
        "finetune", "--algo", "rlif", "--from", bc_run, "--task", "push", "--out", out, "--env-steps", "400",
        "--intervener", "deviation", "--expert-level", "0.6", *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["eval_success_rate"] is not None and any("critic_loss" in r for r in records)
    assert any("intervention_rate" in r for r in records)
    store = EpisodeStore(out / "online.zarr")
    assert store.n_steps == 400  # every step, the unfinished episodes' too
    flags = store.read("is_intervention")
    assert flags.any() and not flags.all()
    taken = flags & ~np.isclose(store.read("action"), store.read("policy_action")).all(axis=1)
    assert (
        taken.sum() > 0
    )  # during takeovers the executed action is the expert's, the proposal is kept beside it
    model = tmp_path / "m.onnx"
    proc = run_cli("export", "--policy", out, "--out", model)
    assert proc.returncode == 0, proc.stderr
    # the robot-data form: the recorded sessions alone (here the run's own online store), no simulator
    for algo, extra in (
        ("rlif", ["--updates=20", "--sac.batch_size=32", "--sac.critics=4"]),
        ("hg-dagger", ["--bc_steps=20"]),
    ):
        sessions = tmp_path / f"{algo}-sessions"
        proc = run_cli(
            "finetune",
            "--algo",
            algo,
            "--from",
            bc_run,
            "--data",
            out / "online.zarr",
            "--out",
            sessions,
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
        assert "1 recorded session store(s)" in proc.stdout and not (sessions / "online.zarr").exists()
        assert run_cli("export", "--policy", sessions, "--out", tmp_path / f"{algo}.onnx").returncode == 0
    proc = run_cli(
        "finetune", "--algo", "sac", "--from", bc_run, "--task", "push", "--out", tmp_path / "sac", "--env-steps",
        "200", *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not EpisodeStore(tmp_path / "sac" / "online.zarr").read("is_intervention").any()
    # RLIF's value rule, judged by the SAC run's critic
    proc = run_cli(
        "finetune", "--algo", "rlif", "--from", bc_run, "--task", "push", "--out", tmp_path / "value",
        "--env-steps", "200", "--intervener", "value", "--reference", tmp_path / "sac", *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert EpisodeStore(tmp_path / "value" / "online.zarr").n_steps == 200


def test_a_killed_rlif_run_resumes_bit_for_bit(tmp_path, bc_run):
    """SIGKILL after the first checkpoint, then --resume: the same actor weights, critic state, online episodes and
    logged metrics as the uninterrupted run (the episodes the killed run recorded after its checkpoint are checked
    against the resumed run's, not written twice)."""
    import pickle
    import signal
    import subprocess
    import time

    from conftest import ROBOSTACK

    args = ["finetune", "--algo", "rlif", "--from", str(bc_run), "--task", "push", "--env-steps", "1600",
            "--intervener", "deviation", "--expert-level", "0.6", *SMALL, "--eval_every=400"]  # fmt: skip
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli(*args, "--out", whole).returncode == 0
    proc = subprocess.Popen(
        [*ROBOSTACK, *args, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not (cut / "checkpoints" / "last").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    at_checkpoint = EpisodeStore(cut / "online.zarr").n_episodes
    while EpisodeStore(cut / "online.zarr").n_episodes == at_checkpoint and proc.poll() is None:
        time.sleep(0.02)  # killed once an episode after the checkpoint is recorded: the resume must match it
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = (cut / "checkpoints" / "last").read_text().strip()
    saved = pickle.loads((cut / "checkpoints" / killed_at / "online_state.pkl").read_bytes())
    assert (
        killed_at != "step_00001600"
        and EpisodeStore(cut / "online.zarr").n_episodes > saved["episodes_written"]
    )
    resumed = run_cli("finetune", "--algo", "rlif", "--out", cut, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    last = "checkpoints/step_00001600"
    for name in ("model.safetensors",):
        assert (whole / last / name).read_bytes() == (cut / last / name).read_bytes()
    a, b = (torch_load(d / last / "train_state.pt") for d in (whole, cut))
    for key in ("critic", "target", "temperature", "critic_opt"):
        for k, v in a[key].items():
            if hasattr(v, "shape"):
                assert torch_equal(v, b[key][k]), (key, k)
    sa, sb = EpisodeStore(whole / "online.zarr"), EpisodeStore(cut / "online.zarr")
    assert sa.n_episodes == sb.n_episodes and sa.n_steps == sb.n_steps == 1600
    for key in ("action", "is_intervention", "obs/object"):
        np.testing.assert_array_equal(sa.read(key), sb.read(key))
    timing = {"env_steps_per_s"}
    ra, rb = ([{k: v for k, v in json.loads(x).items() if k not in timing} for x in (d / "metrics.jsonl").read_text().splitlines()]
              for d in (whole, cut))  # fmt: skip
    assert ra == rb
    again = run_cli("finetune", "--algo", "rlif", "--out", cut, "--resume")
    assert_one_line_error(again, "the run finished")


def torch_load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_hg_dagger_aggregates_takeovers_and_retrains(tmp_path, bc_run):
    out = tmp_path / "hg"
    proc = run_cli(
        "finetune", "--algo", "hg-dagger", "--from", bc_run, "--task", "push", "--out", out, "--env-steps", "240",
        "--envs", "4", "--intervener", "deviation", "--rounds=2", "--bc_steps=20", "--eval_episodes=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    aggregate = EpisodeStore(out / "aggregate.zarr")
    demos = EpisodeStore(json.loads((bc_run / "data.json").read_text())["store"]).n_episodes
    sources = [e.source for e in aggregate.episodes()]
    assert sources[:demos] == ["sim"] * demos and sources[demos:] and set(sources[demos:]) == {"intervention"}
    assert (out / "round_0" / "checkpoints").is_dir() and (out / "round_1" / "checkpoints").is_dir()
    assert EpisodeStore(out / "online.zarr").n_steps == 240
    assert run_cli("export", "--policy", out, "--out", tmp_path / "hg.onnx").returncode == 0


def test_bad_finetune_input(tmp_path, bc_run, push_store):
    base = ["finetune", "--from", bc_run, "--task", "push", "--env-steps", "40", *SMALL]
    data_only = ["finetune", "--from", bc_run, "--data", push_store, "--updates=20", *SMALL]
    assert_one_line_error(
        run_cli_here(*data_only, "--algo", "rlif", "--out", tmp_path / "a"), "no interventions"
    )
    assert_one_line_error(
        run_cli_here(*base, "--algo", "rlif", "--intervener", "nope", "--out", tmp_path / "b"),
        "unknown intervener",
    )
    assert_one_line_error(
        run_cli_here(*base, "--algo", "rlif", "--intervener", "value", "--out", tmp_path / "c"),
        "reference critic",
    )
    assert_one_line_error(
        run_cli_here(*base, "--algo", "sac", "--task", "lift", "--out", tmp_path / "d"), "does not fit task"
    )
    bad = run_cli_here("finetune", "--algo", "nope", "--out", tmp_path / "e")
    assert (
        bad.returncode == 2
        and "choose from 'dppo', 'famo2o', 'hg-dagger', 'iql', 'ppo', 'rlif', 'sac'" in bad.stderr
    )
    assert_one_line_error(
        run_cli_here("finetune", "--algo", "sac", "--out", tmp_path / "f"), "--from is required"
    )
    assert_one_line_error(
        run_cli_here("finetune", "--algo", "rlif", "--from", bc_run, "--out", tmp_path / "h"), "give --task"
    )
    no_takeovers = run_cli_here(
        "finetune", "--algo", "hg-dagger", "--from", bc_run, "--data", push_store, "--out", tmp_path / "i"
    )
    assert_one_line_error(no_takeovers, "no takeovers")


def test_dppo_fine_tunes_a_diffusion_policy_that_stays_an_ordinary_policy(tmp_path, push_store, bc_run):
    bc = tmp_path / "dp"
    run_cli(
        "train", "--policy", "diffusion", "--data", push_store, "--out", bc, "--steps", "20",
        "--policy.unet.down_dims=[16,32,64]", "--policy.unet.step_embed_dim=32", "--policy.num_inference_steps=4",
        "--eval.episodes=0", check=True,
    )  # fmt: skip
    out = tmp_path / "dppo"
    proc = run_cli(
        "finetune", "--algo", "dppo", "--from", bc, "--task", "push", "--envs", "4", "--iterations", "2", "--out",
        out, "--steps_per_iteration=6", "--epochs=2", "--batch_size=12", "--eval_every=0", "--eval_episodes=2",
        "--ft_denoising_steps=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 iterations in push" in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "clip_fraction" in r]
    assert len(trained) == 2 and all(
        {"approx_kl", "explained_variance", "value_loss"} <= set(r) for r in trained
    )
    assert run_cli("export", "--policy", out, "--out", tmp_path / "dppo.onnx").returncode == 0
    assert run_cli("eval", "--policy", out, "--task", "push", "--episodes", "2").returncode == 0
    assert_one_line_error(
        run_cli_here(
            "finetune", "--algo", "dppo", "--from", bc_run, "--task", "push", "--out", tmp_path / "x"
        ),
        "DPPO fine-tunes diffusion policies",
    )


def test_the_online_loop_acts_as_the_evaluator_does(bc_run):
    """The SAC actor's deterministic action stepped through the vector environment gives, seed for seed, the
    episodes `robostack eval` gives the cloned policy: fine-tuning starts from the policy that was evaluated."""
    from robostack.algos.sac import SACConfig, SACLearner
    from robostack.eval.evaluate import evaluate_in_process
    from robostack.eval.metrics import rms_jerk
    from robostack.policies.checkpoint import load_policy
    from robostack.policies.loading import resolve_policy_folder
    from robostack.sim.vector_env import VectorEnv

    n, first = 3, 1000
    policy = load_policy(resolve_policy_folder(str(bc_run))).eval()
    evaluated = evaluate_in_process(policy, "bc", "push", n, seed=first).per_episode
    learner = SACLearner(SACConfig(critics=2, hidden=[8]), policy)
    env = VectorEnv("push", n, first)
    obs, done = env.reset(), np.zeros(n, bool)
    actions, returns, lengths = [[] for _ in range(n)], np.zeros(n), np.zeros(n, int)
    while not done.all():
        raw = learner.raw_action(obs, env.spec.action_low, env.spec.action_high, deterministic=True)
        step = env.step(raw)
        for i in np.nonzero(~done)[0]:
            actions[i].append(raw[i])
            returns[i] += step.reward[i]
        ended = (step.terminated | step.truncated) & ~done
        lengths[ended] = step.episode_length[ended]
        done |= ended
        obs = step.obs
    env.close()
    for i, ep in enumerate(evaluated):
        assert ep["seed"] == first + i
        assert ep["length"] == lengths[i]
        assert ep["return"] == pytest.approx(returns[i], abs=1e-5)
        assert ep["rms_jerk"] == pytest.approx(rms_jerk(np.stack(actions[i])), rel=1e-3)
