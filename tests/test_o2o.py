"""IQL and FamO2O: the losses and FamO2O's pieces on hand-computed tensors, IQL finding a rare good action in a
hand-made MDP, the FamO2O ONNX graph against the PyTorch pair, offline and online runs through the CLI, bit-for-bit
resume, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robostack.algos.famo2o import balance_loss
from robostack.algos.iql import IQLConfig, IQLLearner, awr_weights, expectile_loss, q_loss, value_loss
from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeWriter
from robostack.export import ExportConfig, export_policy
from robostack.policies import PolicySpec, build_policy
from robostack.policies.families.famo2o import encode_beta, squash_beta, tanh_gaussian_log_prob

from conftest import assert_one_line_error, run_cli


# ---------------------------------------------------------------- hand-computed tensors
def test_expectile_value_and_q_losses():
    torch.testing.assert_close(expectile_loss(torch.tensor([2.0, -2.0]), 0.9), torch.tensor([3.6, 0.4]))
    # V = 0 against min(Q1, Q2) = [1, -1]: (0.9 * 1 + 0.1 * 1) / 2 = 0.5
    loss, _ = value_loss(torch.tensor([[1.0, -1.0], [2.0, 0.0]]), torch.zeros(2), 0.9)
    assert float(loss) == pytest.approx(0.5)
    loss, _ = q_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([1.0, 0.0]))
    assert float(loss) == pytest.approx((0 + 4) / 2 + (1 + 0) / 2)


def test_awr_weights_clip_and_per_sample_beta():
    w = awr_weights(torch.tensor([0.0, 0.2, 1.0, -0.5]), 10.0)
    torch.testing.assert_close(w, torch.tensor([1.0, math.exp(2.0), 100.0, math.exp(-5.0)]))
    w = awr_weights(torch.tensor([0.1, 0.1]), torch.tensor([1.0, 20.0]))
    torch.testing.assert_close(w, torch.tensor([math.exp(0.1), math.exp(2.0)]))


def test_beta_encoding_and_balance_squashing():
    enc = encode_beta(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(enc[0], torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    f = [1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3)]
    torch.testing.assert_close(enc[1], torch.tensor([*(math.sin(x) for x in f), *(math.cos(x) for x in f)]))
    u, beta = squash_beta(torch.tensor([0.0, 100.0, -100.0]), 8.0, 14.0)
    torch.testing.assert_close(beta, torch.tensor([11.0, 14.0, 8.0]))
    # z = 0.5, N(0, 1): log N = -0.125 - 0.5 log(2 pi); minus log(1 - tanh(0.5)^2)
    want = -0.125 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.5) ** 2)
    got = tanh_gaussian_log_prob(torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.0))
    assert float(got) == pytest.approx(want, rel=1e-6)
    loss, _ = balance_loss(torch.tensor([[1.0, 3.0], [2.0, 0.0]]), torch.tensor([-1.0, 1.0]), 0.5)
    assert float(loss) == pytest.approx(((0.5 * -1 - 1) + (0.5 * 1 - 0)) / 2)


# ---------------------------------------------------------------- IQL on a hand-made MDP
def test_iql_finds_the_rare_good_action():
    """A one-step task: from any state, action +0.8 succeeds (reward 1), anything else fails (reward 0). 95% of the
    data's episodes act around -0.4 and fail; 5% take the good action. Behaviour cloning's mean would sit near -0.34;
    IQL's advantage-weighted actor must move to the good action."""
    rng = np.random.default_rng(0)
    n = 2000
    good = rng.random(n) < 0.05
    act = np.where(good, 0.8, rng.normal(-0.4, 0.2, n).clip(-1, 1)).astype(np.float32)[:, None]
    state = rng.normal(size=(n, 2)).astype(np.float32)
    batch_all = {
        "obs/state": state, "next/obs/state": state, "action": act,
        "reward": good.astype(np.float32) - 1.0, "terminated": np.ones(n, bool),
    }  # fmt: skip
    spec = PolicySpec(
        {"obs/state": FeatureSpec("float32", (2,))}, FeatureSpec("float32", (1,)), [-1.0], [1.0], 20
    )
    ks = {
        "obs/state": KeyStats(
            min=np.full(2, -3.0), max=np.full(2, 3.0), mean=np.zeros(2), std=np.ones(2), count=n
        ),
        "action": KeyStats(
            min=np.array([-1.0]), max=np.array([1.0]), mean=np.zeros(1), std=np.ones(1), count=n
        ),
    }
    torch.manual_seed(0)
    actor = build_policy("gaussian", {"horizon": 1, "n_action_steps": 1, "hidden_dims": [64, 64]}, spec, ks)
    learner = IQLLearner(IQLConfig(hidden=[64, 64], batch_size=256), actor, offline_steps=1500)
    for _ in range(1500):
        i = rng.integers(0, n, 256)
        learner.update({k: torch.as_tensor(v[i]) for k, v in batch_all.items()})
    with torch.no_grad():
        a = learner.act({"obs/state": torch.as_tensor(state[:200])}, deterministic=True)
    assert float(act.mean()) < -0.3 and float(a.mean()) > 0.6, float(a.mean())


# ---------------------------------------------------------------- FamO2O export
def test_famo2o_onnx_graph_equals_the_pytorch_pair(tmp_path):
    import onnxruntime as ort

    from robostack.policies import save_policy

    from test_policies import SPEC, STATS

    torch.manual_seed(0)
    pol = build_policy("famo2o", {"hidden_dims": [32, 32], "balance_hidden_dims": [16]}, SPEC, STATS).eval()
    save_policy(pol, tmp_path / "fam", STATS)
    report = export_policy(ExportConfig(policy=str(tmp_path / "fam"), out=str(tmp_path / "fam.onnx")))
    assert report.parity_max_abs <= 1e-5
    sess = ort.InferenceSession(str(tmp_path / "fam.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["action", "beta"]
    rng = np.random.default_rng(1)
    feed = {"obs/state": rng.random((5, 1, 3), np.float32), "obs/object": rng.random((5, 1, 2), np.float32)}
    action, beta = sess.run(None, feed)
    with torch.no_grad():
        ref_a = pol.predict_chunk({k: torch.as_tensor(v) for k, v in feed.items()})
        _, ref_beta = pol.act({k: torch.as_tensor(v) for k, v in feed.items()})
    np.testing.assert_allclose(action, ref_a.numpy(), atol=1e-5)
    np.testing.assert_allclose(beta[:, 0], ref_beta.numpy(), atol=1e-5)
    assert np.all((beta >= 8.0) & (beta <= 14.0))


# ---------------------------------------------------------------- the CLI
SMALL = ["--iql.hidden=[32,32]", "--policy.hidden_dims=[32,32]", "--iql.batch_size=64", "--log_every=10",
         "--save_every=20", "--eval_episodes=2"]  # fmt: skip


@pytest.mark.parametrize("algo", ["iql", "famo2o"])
def test_offline_then_online_through_the_cli(tmp_path, push_store, algo):
    extra = ["--policy.balance_hidden_dims=[16]"] if algo == "famo2o" else []
    off = tmp_path / "off"
    proc = run_cli("train", "--algo", algo, "--data", push_store, "--data", push_store, "--out", off, "--steps", "40",
                   *SMALL, *extra)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (off / "checkpoints" / "step_00000040" / "eval.json").is_file()
    proc = run_cli("finetune", "--algo", algo, "--from", off, "--task", "push", "--env-steps", "48", "--envs", "4",
                   "--out", tmp_path / "on", "--eval_episodes=2", "--log_every=16")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    on = tmp_path / "on"
    assert (on / "online.zarr").is_dir() and (on / "checkpoints" / "step_00000048" / "policy.json").is_file()
    before = load_file(str(off / "checkpoints" / "step_00000040" / "model.safetensors"))
    after = load_file(str(on / "checkpoints" / "step_00000048" / "model.safetensors"))
    assert any(
        not torch.equal(before[k], after[k]) for k in before
    )  # the actor learns online (no spent schedule)
    proc = run_cli("export", "--policy", on, "--out", tmp_path / "m.onnx")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("eval", "--policy", tmp_path / "m.onnx", "--task", "push", "--episodes", "1")
    assert proc.returncode == 0, proc.stderr
    if (
        algo == "famo2o"
    ):  # the balance model and the universal policy in one graph, driving the ROS closed loop
        proc = run_cli(
            "eval", "--policy", tmp_path / "m.onnx", "--task", "push", "--episodes", "1", "--ros", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["policy_status"]["commands"] > 0


def test_offline_resume_is_bit_for_bit(tmp_path, push_store):
    """Stopped after its step-20 checkpoint (the later one gone, as after a kill) and resumed, a run ends with the
    weights and learner state of the same run trained in one go."""
    import shutil

    args = ["train", "--algo", "famo2o", "--data", push_store, "--steps", "40", *SMALL, "--eval_episodes=0",
            "--policy.balance_hidden_dims=[16]"]  # fmt: skip
    run_cli(*args, "--out", tmp_path / "a", check=True)
    run_cli(*args, "--out", tmp_path / "b", check=True)
    cut = tmp_path / "b" / "checkpoints"
    shutil.rmtree(cut / "step_00000040")
    (cut / "last").write_text("step_00000020")
    run_cli("train", "--algo", "famo2o", "--out", tmp_path / "b", "--resume", check=True)
    wa = load_file(str(tmp_path / "a" / "checkpoints" / "step_00000040" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "step_00000040" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = torch.load(tmp_path / "a" / "checkpoints" / "step_00000040" / "train_state.pt", weights_only=False)
    sb = torch.load(tmp_path / "b" / "checkpoints" / "step_00000040" / "train_state.pt", weights_only=False)
    for name in ("q", "q_target", "v", "temperature"):
        assert all(torch.equal(sa[name][k], sb[name][k]) for k in sa[name]), name


def _store_without_reward(path):
    feats = {"obs/state": FeatureSpec("float32", (4,)), "obs/object": FeatureSpec("float32", (6,)),
             "action": FeatureSpec("float32", (2,))}  # fmt: skip
    with EpisodeWriter.create(path, StoreInfo(control_rate_hz=20.0, features=feats, tasks=["push"])) as w:
        rng = np.random.default_rng(0)
        w.add_episode({k: rng.normal(size=(5, *f.shape)).astype(np.float32) for k, f in feats.items()})


def test_bad_input_is_one_line(tmp_path, push_store):
    _store_without_reward(tmp_path / "norew.zarr")
    assert_one_line_error(
        run_cli("train", "--algo", "iql", "--data", tmp_path / "norew.zarr", "--out", tmp_path / "x"),
        "no reward",
    )
    feats = {"obs/joints": FeatureSpec("float32", (7,)), "action": FeatureSpec("float32", (7,)),
             "reward": FeatureSpec("float32", ()), "terminated": FeatureSpec("bool", ())}  # fmt: skip
    with EpisodeWriter.create(
        tmp_path / "arm.zarr", StoreInfo(control_rate_hz=20.0, features=feats, tasks=["arm"])
    ) as w:
        w.add_episode({"obs/joints": np.zeros((3, 7), np.float32), "action": np.zeros((3, 7), np.float32),
                       "reward": np.zeros(3, np.float32), "terminated": np.zeros(3, bool)})  # fmt: skip
    assert_one_line_error(
        run_cli(
            "train",
            "--algo",
            "iql",
            "--data",
            push_store,
            "--data",
            tmp_path / "arm.zarr",
            "--out",
            tmp_path / "y",
        ),
        "one task",
    )
    bc = tmp_path / "bc"
    run_cli("train", "--policy", "gaussian", "--data", push_store, "--out", bc, "--steps", "2", "--eval.episodes=0",
            "--policy.horizon=1", "--policy.n_action_steps=1", "--policy.hidden_dims=[8]", check=True)  # fmt: skip
    assert_one_line_error(
        run_cli("finetune", "--algo", "iql", "--from", bc, "--task", "push", "--out", tmp_path / "z"),
        "not an offline",
    )
    iql = tmp_path / "iql"
    run_cli("train", "--algo", "iql", "--data", push_store, "--out", iql, "--steps", "2", *SMALL,
            "--eval_episodes=0", check=True)  # fmt: skip
    assert_one_line_error(
        run_cli("finetune", "--algo", "famo2o", "--from", iql, "--task", "push", "--out", tmp_path / "w"),
        "fine-tune it with --algo iql",
    )
    assert_one_line_error(
        run_cli("finetune", "--algo", "iql", "--from", iql, "--task", "lift", "--out", tmp_path / "v"),
        "fit task",
    )
    assert_one_line_error(
        run_cli(
            "train",
            "--data",
            push_store,
            "--data",
            push_store,
            "--policy",
            "gaussian",
            "--out",
            tmp_path / "u",
        ),
        "one store",
    )


def test_o2o_bench_suite_end_to_end(tmp_path):
    """A two-entry o2o suite through `robostack bench`: dataset recipe, offline, online, test-seed evaluations,
    the report and the curves."""
    suite = tmp_path / "tiny_o2o.yaml"
    entry = ("dataset: push_expert_20, offline_steps: 20, online_env_steps: 16, envs: 4, task: push, "
             "curve_episodes: 1, test_episodes: 2, eval_every: 8, iql: {hidden: [32, 32], batch_size: 32}")  # fmt: skip
    suite.write_text(
        "name: tiny_o2o\no2o:\n"
        f"  - {{name: p-iql, algo: iql, {entry}}}\n"
        f"  - {{name: p-famo2o, algo: famo2o, {entry}}}\n"
    )
    proc = run_cli("bench", "--suite", suite, "--out", tmp_path / "b", "--eval-workers", "1")
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "b" / "o2o.md").read_text()
    assert "push iql" in report and "FamO2O" in report and (tmp_path / "b" / "o2o.png").stat().st_size > 0
    row = json.loads((tmp_path / "b" / "o2o" / "p-iql" / "o2o_result.json").read_text())
    assert row["test_seeds"] == [1_000_000, 1_000_001] and row["online"]["episodes"] == 2 and row["curve"]
