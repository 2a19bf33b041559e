"""ONNX export and the inference runtime: parity for every family, metadata, refusals, the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from robostack.data.normalize import stats_hash
from robostack.data.schema import FeatureSpec
from robostack.errors import RobostackError, SpecError
from robostack.export import ExportConfig, export_policy, read_model_meta
from robostack.export.onnx_export import random_inputs
from robostack.policies import PolicySpec, build_policy, save_policy
from robostack.runtime import ProviderError, load

from conftest import assert_one_line_error, run_cli, run_cli_here
from test_policies import SPEC, STATS, TINY_UNET, ks

FAMILIES = {
    "diffusion": {**TINY_UNET, "num_inference_steps": 3},
    "flow": {**TINY_UNET, "num_integration_steps": 2, "integrator": "midpoint"},
    "gaussian": {"hidden_dims": [32, 32], "n_obs_steps": 2},
}


def _policy_folder(tmp_path, family, seed=0, spec=SPEC, stats=STATS):
    torch.manual_seed(seed)
    pol = build_policy(family, FAMILIES[family], spec, stats)
    folder = tmp_path / f"{family}_policy"
    save_policy(pol, folder, stats, {"train_config": {"seed": seed, "policy": FAMILIES[family]}})
    return pol.eval(), folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One exported model per family, with its source PyTorch policy."""
    base = tmp_path_factory.mktemp("export")
    out = {}
    for family in FAMILIES:
        pol, folder = _policy_folder(base, family)
        report = export_policy(ExportConfig(policy=str(folder), out=str(base / f"{family}.onnx")))
        out[family] = (pol, base / f"{family}.onnx", report)
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_parity_on_fresh_random_inputs(exported, family):
    pol, path, report = exported[family]
    assert report.parity_max_abs <= 1e-5
    runtime = load(path, device="cpu")
    assert runtime.backend == "onnxruntime" and runtime.provider == "CPUExecutionProvider"
    feed = random_inputs(pol, 6, np.random.default_rng(123))  # not the exporter's own check inputs
    noise = feed.pop("noise", None)  # a Gaussian policy's graph is its mean: no noise input
    assert (noise is None) == (family == "gaussian")
    got = runtime.predict_chunk(feed, noise=noise)
    with torch.no_grad():
        ref = pol.predict_chunk(
            {k: torch.as_tensor(v) for k, v in feed.items()},
            noise=None if noise is None else torch.as_tensor(noise),
        )
    assert got.shape == (6, pol.config.n_action_steps, 2)
    assert np.abs(got - ref.numpy()).max() <= 1e-5
    assert np.all(got >= np.array(SPEC.action_low) - 1e-7) and np.all(
        got <= np.array(SPEC.action_high) + 1e-7
    )
    torch_rt = load(path, device="cpu", backend="torch")  # model.policy/ beside the .onnx
    assert torch_rt.backend == "torch-eager"
    assert np.abs(torch_rt.predict_chunk(feed, noise=noise) - got).max() <= 1e-5


def test_metadata_round_trip_and_checker(exported):
    pol, path, report = exported["diffusion"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    meta = read_model_meta(path)
    assert meta.family == "diffusion" and meta.steps == 3 and report.steps == 3
    assert meta.spec.to_json() == SPEC.to_json()
    assert (meta.n_obs_steps, meta.horizon, meta.n_action_steps) == (2, 16, 8)
    assert meta.control_rate_hz == 20.0 and meta.stats_hash == stats_hash(STATS)
    assert len(meta.config_hash) == 16 and meta.robostack_version and meta.noise == "gaussian"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["robostack.n_action_steps"] == "8" and props["robostack.family"] == "diffusion"
    assert [i.name for i in model.graph.input] == ["obs/state", "obs/object", "noise"]
    gauss = exported["gaussian"][1]
    assert read_model_meta(gauss).noise == "none"
    assert [i.name for i in onnx.load(str(gauss)).graph.input] == ["obs/state", "obs/object"]


def test_steps_override_and_fp16(tmp_path):
    pol, folder = _policy_folder(tmp_path, "diffusion")
    report = export_policy(ExportConfig(policy=str(folder), out=str(tmp_path / "m.onnx"), steps=2, fp16=True))
    assert report.steps == 2 and read_model_meta(tmp_path / "m.onnx").steps == 2
    feed = random_inputs(pol, 2, np.random.default_rng(5))
    noise = feed.pop("noise")
    got = load(tmp_path / "m.onnx", "cpu").predict_chunk(feed, noise=noise)
    with torch.no_grad():
        ref = pol.predict_chunk(
            {k: torch.as_tensor(v) for k, v in feed.items()}, noise=torch.as_tensor(noise), num_steps=2
        )
    assert np.abs(got - ref.numpy()).max() <= 1e-5
    assert report.fp16_path and read_model_meta(report.fp16_path).precision == "fp16"
    assert report.fp16_max_abs is not None and report.fp16_max_abs < 0.05, report.notes  # measured, small
    assert (tmp_path / "m.export.yaml").is_file() and (tmp_path / "m.policy" / "model.safetensors").is_file()


def test_select_action_contract_matches_pytorch(exported):
    pol, path, _ = exported["gaussian"]  # deterministic (mean) in both, so whole rollouts must agree
    runtime = load(path, "cpu")
    rng = np.random.default_rng(0)
    pol.reset()
    runtime.reset()
    for t in range(20):
        obs = {"obs/state": rng.uniform(0, 1, 3).astype(np.float32), "obs/object": rng.uniform(-1, 1, 2)}
        plan = runtime.will_plan
        assert plan == pol.will_plan == (t % 8 == 0)
        np.testing.assert_allclose(runtime.select_action(obs), pol.select_action(obs), atol=1e-5)


def test_gaussian_graph_keeps_exact_where_it_simplifies(tmp_path):
    """The mean-only graph folds normalisation, drops a provably idle clip and rewrites Mish: check the cases
    where those shortcuts must not apply (LayerNorm gains that allow e^x to overflow, action statistics wider
    than the bounds) still match PyTorch, and that bound buffers do not leak between calls."""
    from robostack.policies.families.gaussian_graph import GaussianMeanGraph

    wide = {**STATS, "action": ks([-3.0, -3.0], [3.0, 3.0])}
    torch.manual_seed(0)
    pol = build_policy("gaussian", FAMILIES["gaussian"], SPEC, wide).eval()
    with torch.no_grad():
        for m in pol.trunk:
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.fill_(8.0)  # |gamma z| can reach 8 * sqrt(31) > 40: e^x would overflow unclamped
    graph = GaussianMeanGraph(pol, list(SPEC.obs))
    assert graph.clip and [m.bounded for m in graph.rest if hasattr(m, "bounded")] == [False, False]
    folder = tmp_path / "g"
    save_policy(pol, folder, wide, {"train_config": {"seed": 0}})
    report = export_policy(ExportConfig(policy=str(folder), out=str(tmp_path / "g.onnx")))
    assert report.parity_max_abs <= 1e-5
    runtime = load(tmp_path / "g.onnx", "cpu")
    feed = random_inputs(pol, 3, np.random.default_rng(9))
    first = runtime.predict_chunk(feed)
    with torch.no_grad():
        ref = pol.predict_chunk({k: torch.as_tensor(v) for k, v in feed.items()}).numpy()
    assert np.abs(first - ref).max() <= 1e-5 and np.abs(ref).max() == 1.0  # clipped to the bounds
    # float64 observations take the checked, casting path; float32 ones of the exact shape the fast one
    as64 = runtime.predict_chunk({k: v.astype(np.float64) for k, v in feed.items()})
    np.testing.assert_array_equal(as64, first)
    longer = {k: np.concatenate([v, v], axis=1) for k, v in feed.items()}  # extra frames: the last T_o count
    gpu_feed = runtime._prepare(
        longer
    )  # what the GPU path binds: checked float32 copies of the last T_o frames
    for k, v in feed.items():
        assert gpu_feed[k].dtype == np.float32 and np.array_equal(gpu_feed[k], v)
    kept = first.copy()
    runtime.predict_chunk({k: v + 1.0 for k, v in feed.items()})
    np.testing.assert_array_equal(first, kept)  # a later call does not write into an earlier result
    with pytest.raises(SpecError, match="takes no noise"):
        runtime.predict_chunk(feed, noise=np.zeros((3, 8, 2), np.float32))
    with pytest.raises(SpecError, match="takes no noise"):
        load(tmp_path / "g.onnx", "cpu", backend="torch").predict_chunk(feed, noise=np.zeros((3, 8, 2)))
    bad = feed["obs/object"].copy()
    bad[2, 1, 0] = np.inf
    with pytest.raises(SpecError, match="'obs/object' holds NaN or Inf"):
        runtime.predict_chunk({**feed, "obs/object": bad})


def test_refusals(exported, tmp_path):
    _, path, _ = exported["diffusion"]
    runtime = load(path, "cpu")
    good = {"obs/state": np.zeros((1, 2, 3), np.float32), "obs/object": np.zeros((1, 2, 2), np.float32)}
    with pytest.raises(SpecError, match="'obs/object' has per-step shape"):
        runtime.predict_chunk({**good, "obs/object": np.zeros((1, 2, 3), np.float32)})
    with pytest.raises(SpecError, match="missing key 'obs/state'"):
        runtime.predict_chunk({"obs/object": good["obs/object"]})
    bad = good["obs/state"].copy()
    bad[0, 1, 2] = np.nan
    with pytest.raises(SpecError, match="'obs/state' holds NaN"):
        runtime.predict_chunk({**good, "obs/state": bad})
    with pytest.raises(SpecError, match="'obs/state' has per-step shape"):
        runtime.select_action({"obs/state": np.zeros(4), "obs/object": np.zeros(2)})
    with pytest.raises(SpecError, match="noise has shape"):
        runtime.predict_chunk(good, noise=np.zeros((1, 8, 2), np.float32))
    with pytest.raises(SpecError, match="disagree on the batch size"):
        runtime.predict_chunk({**good, "obs/object": np.zeros((2, 2, 2), np.float32)})
    with pytest.raises(ProviderError, match="no GPU provider"):
        load(path, device="cuda", backend="onnxruntime")
    other = PolicySpec(
        obs={"obs/state": FeatureSpec("float32", (4,)), "obs/object": FeatureSpec("float32", (2,))},
        action=FeatureSpec("float32", (2,)),
        action_low=[-1, -1],
        action_high=[1, 1],
        control_rate_hz=20.0,
    )
    with pytest.raises(SpecError, match=r"'obs/state': model expects float32\(3,\)"):
        load(path, "cpu", expect=other)
    stripped = onnx.load(str(path))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "plain.onnx"))
    with pytest.raises(RobostackError, match="no robostack metadata"):
        load(tmp_path / "plain.onnx", "cpu")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(RobostackError, match="onnxruntime cannot load it"):
        load(tmp_path / "junk.onnx", "cpu", backend="onnxruntime")


def test_export_eval_and_infer_bench_through_the_cli(tmp_path, push_store):
    run = tmp_path / "run"
    run_cli(
        "train", "--policy", "diffusion", "--data", push_store, "--out", run, "--steps", "60",
        "--eval.episodes=0", "--policy.unet.down_dims=[16,32,64]", "--policy.unet.step_embed_dim=32",
        "--optim.batch_size=16", check=True,
    )  # fmt: skip
    model = tmp_path / "deploy" / "model.onnx"
    proc = run_cli("export", "--policy", run, "--out", model, "--steps", "4", check=True)
    assert "max |ONNX - PyTorch|" in proc.stdout and model.is_file()
    ev = ["--task", "push", "--episodes", "3", "--json"]
    onnx_res = json.loads(run_cli("eval", "--policy", model, *ev, check=True).stdout)
    assert onnx_res["episodes"] == 3 and onnx_res["latency_p50_ms"] > 0
    again = json.loads(run_cli("eval", "--policy", model, *ev, "--workers", "2", check=True).stdout)
    assert again["per_episode"] == onnx_res["per_episode"]  # seeded noise: workers change nothing
    short = json.loads(run_cli("eval", "--policy", model, *ev, "--n-action-steps", "2", check=True).stdout)
    assert short["episodes"] == 3  # re-plans every 2 steps instead of 8
    assert_one_line_error(
        run_cli_here("eval", "--policy", model, *ev, "--n-action-steps", "9"), "n_action_steps"
    )
    assert_one_line_error(
        run_cli_here("eval", "--policy", run, *ev, "--n-action-steps", "99"), "n_action_steps"
    )
    fewer = json.loads(run_cli("eval", "--policy", run, *ev, "--num-steps", "2", check=True).stdout)
    assert fewer["episodes"] == 3  # 2 DDIM steps per chunk instead of the trained 10
    assert_one_line_error(run_cli_here("eval", "--policy", model, *ev, "--num-steps", "2"), "re-export")
    bad = run_cli(
        "eval", "--policy", run, *ev, "--num-steps", "101", "--workers", "2"
    )  # checked before the pool
    assert_one_line_error(bad, "denoising steps")
    assert_one_line_error(
        run_cli_here("eval", "--policy", run, *ev, "--num-steps", "0"), "--num-steps must be at least 1"
    )
    proc = run_cli("infer-bench", "--model", model, "--iters", "5", "--warmup", "1", "--out", tmp_path / "ib")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "ib" / "results.json").read_text())
    backends = {(t["backend"], t["device"]) for t in res["timings"]}
    assert {("onnxruntime", "cpu"), ("torch-eager", "cpu"), ("lerobot", "cpu")} <= backends
    assert res["ratios"] and "faster than" in proc.stdout


def test_cli_export_bad_input(tmp_path, exported):
    assert_one_line_error(
        run_cli("export", "--policy", tmp_path / "nope", "--out", tmp_path / "m.onnx"), "no such policy"
    )
    _, path, _ = exported["gaussian"]
    folder = path.with_suffix(".policy")
    assert_one_line_error(
        run_cli_here("export", "--policy", folder, "--out", tmp_path / "m.txt"), "must end in .onnx"
    )
    assert_one_line_error(
        run_cli_here("export", "--policy", folder, "--out", tmp_path / "m.onnx", "--steps", "3"),
        "no denoising or integration steps",
    )
    stripped = onnx.load(str(path))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "plain.onnx"))
    assert_one_line_error(
        run_cli_here("eval", "--policy", tmp_path / "plain.onnx", "--task", "push", "--episodes", "1"),
        "no robostack metadata",
    )
    assert_one_line_error(
        run_cli_here("infer-bench", "--model", tmp_path / "none.onnx"), "no such model file"
    )


def test_parity_on_a_trained_policy_at_its_real_steps(tmp_path, push_store):
    """A policy trained through the CLI on real demonstrations, exported at the 10 DDIM steps its recipe uses, and
    compared on observation histories taken from those demonstrations (not the untrained nets above)."""
    from robostack.data import EpisodeStore
    from robostack.runtime.loader import load_any_policy

    run = tmp_path / "run"
    run_cli("train", "--config", "configs/policies/diffusion_push.yaml", "--data", push_store, "--out", run,
            "--steps", "300", "--optim.warmup_steps=30", "--eval.episodes=0", check=True)  # fmt: skip
    proc = run_cli("export", "--policy", run, "--out", tmp_path / "m.onnx", check=True)
    assert "parity" in proc.stdout
    meta = read_model_meta(tmp_path / "m.onnx")
    assert meta.steps == 10, meta.steps
    pol = load_any_policy(run)
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.5 * losses[0], "the policy should have learned (loss at least halved)"
    store = EpisodeStore(push_store)
    t_o = pol.config.n_obs_steps
    feed = {}
    for k in pol.spec.obs:
        rows = store.read(k)
        starts = np.arange(0, len(rows) - t_o, max(1, (len(rows) - t_o) // 8))[:8]
        feed[k] = np.stack([rows[s : s + t_o] for s in starts]).astype(np.float32)
    noise = np.random.default_rng(3).standard_normal((len(starts), pol.config.horizon, 2)).astype(np.float32)
    got = load(tmp_path / "m.onnx", "cpu").predict_chunk(feed, noise=noise)
    with torch.no_grad():
        ref = pol.predict_chunk(
            {k: torch.as_tensor(v) for k, v in feed.items()}, noise=torch.as_tensor(noise)
        )
    assert got.shape == tuple(ref.shape) and np.abs(got - ref.numpy()).max() <= 1e-5
