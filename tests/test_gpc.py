"""GPC: the composed policy's arithmetic (conversions, mixing, chunk lengths, observation sets), its exactness at
one-hot weights, refusals of parents that cannot share a sampler, export parity, the weight search's seed discipline
and the CLI as a user calls it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from robostack.algos.gpc_search import search_and_test_seeds, weight_grid
from robostack.data.schema import FeatureSpec
from robostack.errors import RobostackError
from robostack.export import ExportConfig, export_policy, read_model_meta
from robostack.policies import PolicySpec, build_policy, save_policy
from robostack.policies.checkpoint import load_policy
from robostack.policies.composition import compose, save_composite
from robostack.policies.schedulers import ddim_coefficients
from robostack.policies.score_mix import (
    eps_to_velocity,
    mix,
    segment_weights,
    velocity_to_eps,
    vp_point_to_flow,
)
from robostack.policies.stacked_unet import can_stack, stacked_unet
from robostack.policies.unet1d import ConditionalUnet1D

from conftest import assert_one_line_error, run_cli
from test_policies import SPEC, STATS, TINY_UNET, ks

CONFIGS = {
    "diffusion": {**TINY_UNET, "num_inference_steps": 5},
    "flow": {**TINY_UNET, "num_integration_steps": 5},
}


def _folder(tmp_path, name, family, seed, spec=SPEC, stats=STATS, **over):
    torch.manual_seed(seed)
    pol = build_policy(family, {**CONFIGS[family], **over}, spec, stats).eval()
    save_policy(pol, tmp_path / name, stats)
    return pol, tmp_path / name


def _obs(b=3, keys=("obs/state", "obs/object")):
    g = torch.Generator().manual_seed(7)
    shapes = {"obs/state": (3,), "obs/object": (2,)}
    return {k: torch.rand(b, 2, *shapes[k], generator=g) for k in keys}


# ---------------------------------------------------------------- arithmetic on hand-computed numbers


def test_eps_velocity_conversion_on_hand_computed_numbers():
    x0, eps = torch.tensor([0.5, -0.25]), torch.tensor([-1.0, 2.0])
    a, s = 0.6, 0.8  # a VP point: a^2 + s^2 = 1
    x = a * x0 + s * eps
    y, t = vp_point_to_flow(x, a, s)
    assert t == pytest.approx(4 / 7)
    torch.testing.assert_close(y, (1 - t) * x0 + t * eps)  # the same point on the flow path
    u = eps - x0  # the flow network's exact target there
    torch.testing.assert_close(velocity_to_eps(y, u, t), eps)
    torch.testing.assert_close(eps_to_velocity(y, eps, t), u)
    # by hand for the first element: y = (0.3 - 0.8) / 1.4, u = -1.5, eps = y + (3/7) * u = -1
    assert float(y[0]) == pytest.approx(-0.5 / 1.4) and float(velocity_to_eps(y, u, t)[0]) == pytest.approx(
        -1.0
    )


def test_segments_mix_the_common_prefix_and_keep_the_longer_tail():
    assert segment_weights([16, 16], [0.3, 0.7]) == [(0, 16, [0.3, 0.7])]
    assert segment_weights([16, 8], [0.3, 0.7]) == [(0, 8, [0.3, 0.7]), (8, 16, [1.0, 0.0])]
    assert segment_weights([8, 16], [1.0, 0.0]) == [
        (0, 8, [1.0, 0.0]),
        (8, 16, [0.0, 1.0]),
    ]  # tail regardless
    seg = segment_weights([8, 16, 16], [0.5, 0.25, 0.25])
    assert seg[1] == (8, 16, [0.0, 0.5, 0.5])  # the covering parents share their weights renormalised
    a, b = torch.ones(1, 16, 2), torch.full((1, 8, 2), 3.0)
    m = mix([a, b], segment_weights([16, 8], [0.5, 0.5]))
    assert m.shape == (1, 16, 2) and torch.all(m[:, :8] == 2.0) and torch.all(m[:, 8:] == 1.0)


def test_weight_grid_and_disjoint_seed_sets():
    two = weight_grid(2, 0.1)
    assert len(two) == 11 and two[0] == [1.0, 0.0] and two[-1] == [0.0, 1.0]
    three = weight_grid(3, 0.5)
    assert len(three) == 6 and all(math.isclose(sum(w), 1.0) for w in three) and [0.5, 0.0, 0.5] in three
    search, test = search_and_test_seeds(50, 200)
    assert len(search) == 50 and len(test) == 200 and not set(search) & set(test)
    with pytest.raises(RobostackError, match="divide 1"):
        weight_grid(2, 0.3)


# ---------------------------------------------------------------- the composed policy


@torch.no_grad()
def test_one_hot_weights_reproduce_each_parent_bit_for_bit(tmp_path):
    d, dpath = _folder(tmp_path, "d", "diffusion", 0)
    d2, d2path = _folder(tmp_path, "d2", "diffusion", 1)
    f, fpath = _folder(tmp_path, "f", "flow", 2)
    f2, f2path = _folder(tmp_path, "f2", "flow", 3)
    obs, noise = _obs(), torch.randn(3, 16, 2)
    for (a, pa), (b, pb) in (
        ((d, dpath), (d2, d2path)),
        ((f, fpath), (f2, f2path)),
        ((d, dpath), (f, fpath)),
    ):
        comp = compose([pa, pb], [1.0, 0.0])[0]
        assert torch.equal(comp.predict_chunk(obs, noise=noise), a.predict_chunk(obs, noise=noise))
        if a.family == b.family:  # the sampler is the parents' own: the other one-hot is exact too
            comp.set_weights([0.0, 1.0])
            assert torch.equal(comp.predict_chunk(obs, noise=noise), b.predict_chunk(obs, noise=noise))
        mixed = compose([pa, pb], [0.5, 0.5])[0].predict_chunk(obs, noise=noise)
        assert not torch.equal(mixed, a.predict_chunk(obs, noise=noise))


@torch.no_grad()
def test_a_flow_parent_under_the_ddim_sampler_is_euler_on_the_ddim_grid(tmp_path):
    """At (0, 1) a diffusion+flow composite integrates the flow parent's ODE with Euler steps at the DDIM grid's
    times t_k = s_k / (a_k + s_k) (no x0 clip when the diffusion parent does not clip)."""
    _, dpath = _folder(tmp_path, "d", "diffusion", 0, clip_sample=False)
    f, fpath = _folder(tmp_path, "f", "flow", 1)
    comp = compose([dpath, fpath], [0.0, 1.0])[0]
    obs, noise = _obs(), torch.randn(3, 16, 2)
    got = comp.sample(comp.conditions(obs), noise, 5)
    cond = f.condition(obs)
    plan = ddim_coefficients(comp.schedule, 5)
    a0, s0 = math.sqrt(plan[0][1]), math.sqrt(1 - plan[0][1])
    y, t = vp_point_to_flow(noise, a0, s0)
    for _, _, ab_prev in plan:
        t_prev = math.sqrt(1 - ab_prev) / (math.sqrt(ab_prev) + math.sqrt(1 - ab_prev))
        y = y - (t - t_prev) * f.velocity(y, t, cond)
        t = t_prev
    assert t == 0.0
    torch.testing.assert_close(got, y, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_a_policy_composed_with_itself_is_the_policy(tmp_path):
    for family in ("diffusion", "flow"):
        pol, path = _folder(tmp_path, family, family, 0)
        comp = compose([path, path, path], [0.2, 0.5, 0.3])[0]
        obs, noise = _obs(), torch.randn(3, 16, 2)
        torch.testing.assert_close(
            comp.predict_chunk(obs, noise=noise), pol.predict_chunk(obs, noise=noise), rtol=1e-5, atol=1e-5
        )


@torch.no_grad()
def test_different_chunk_lengths_and_observation_sets(tmp_path):
    state_only = PolicySpec(
        {"obs/state": SPEC.obs["obs/state"]}, SPEC.action, SPEC.action_low, SPEC.action_high, 20.0
    )
    stats = {k: STATS[k] for k in ("obs/state", "action")}
    a, pa = _folder(tmp_path, "long", "diffusion", 0, spec=state_only, stats=stats)  # horizon 16, state only
    b, pb = _folder(
        tmp_path, "short", "diffusion", 1, horizon=8, n_action_steps=4
    )  # horizon 8, state + object
    comp, cstats, prov = compose([pa, pb], [0.4, 0.6])
    assert list(comp.spec.obs) == ["obs/state", "obs/object"] and comp.config.horizon == 16
    assert comp.noise_shape == (16, 2) and comp.config.n_action_steps == a.config.n_action_steps
    obs, noise = _obs(), torch.randn(3, 16, 2)
    out = comp.predict_chunk(obs, noise=noise)
    assert out.shape == (3, 8, 2) and torch.isfinite(out).all()
    # at (0, 1) the shorter parent's prefix is its own chunk exactly; the tail is the longer parent's
    comp.set_weights([0.0, 1.0])
    conds = comp.conditions(obs)
    x = comp.sample(conds, noise, 5)
    assert torch.equal(x[:, :8], b.sample(b.condition(obs), noise[:, :8], 5))
    # saved and reloaded, it is the same policy
    comp.set_weights([0.4, 0.6])
    save_composite(comp, cstats, prov, tmp_path / "comp")
    back = load_policy(tmp_path / "comp")
    assert torch.equal(back.predict_chunk(obs, noise=noise), out)
    meta = json.loads((tmp_path / "comp" / "policy.json").read_text())
    assert meta["composition"]["weights"] == [0.4, 0.6] and len(meta["composition"]["parents"]) == 2


def test_parents_that_cannot_share_a_sampler_are_refused(tmp_path):
    _, d = _folder(tmp_path, "d", "diffusion", 0)
    other_stats = {**STATS, "action": ks([-0.9, -0.5], [1, 0.5])}
    _, wide = _folder(tmp_path, "wide", "diffusion", 1, stats=other_stats)
    slow = PolicySpec(SPEC.obs, SPEC.action, SPEC.action_low, SPEC.action_high, 10.0)
    _, s = _folder(tmp_path, "slow", "flow", 2, spec=slow)
    _, t1 = _folder(tmp_path, "t1", "flow", 3, n_obs_steps=1)
    _, sched = _folder(tmp_path, "sched", "diffusion", 4, num_train_steps=50)
    torch.manual_seed(0)
    g = build_policy("gaussian", {"hidden_dims": [8], "n_obs_steps": 2}, SPEC, STATS)
    save_policy(g, tmp_path / "g", STATS)
    cases = [
        ([d, wide], [0.5, 0.5], "normalise actions differently"),
        ([d, s], [0.5, 0.5], "different control rates"),
        ([d, t1], [0.5, 0.5], "different observation histories"),
        ([d, sched], [0.5, 0.5], "different DDPM schedules"),
        ([d, tmp_path / "g"], [0.5, 0.5], "GPC composes the scores of diffusion and flow"),
        ([d, d], [0.7, 0.7], "sum to 1"),
        ([d, d], [1.5, -0.5], ">= 0"),
        ([d], [1.0], "at least two"),
    ]
    for paths, weights, message in cases:
        with pytest.raises(RobostackError, match=message):
            compose(paths, weights)


def _camera_spec():
    obs = {"obs/state": SPEC.obs["obs/state"], "obs/image_top": FeatureSpec("uint8", (24, 24, 3))}
    return PolicySpec(obs, SPEC.action, SPEC.action_low, SPEC.action_high, 20.0)


def test_export_parity_of_diffusion_flow_and_state_camera_composites(tmp_path):
    _, d = _folder(tmp_path, "d", "diffusion", 0)
    _, f = _folder(tmp_path, "f", "flow", 1)
    cam_stats = {"obs/state": STATS["obs/state"], "action": STATS["action"]}
    _, c = _folder(tmp_path, "cam", "flow", 2, spec=_camera_spec(), stats=cam_stats, num_integration_steps=3)
    for name, parents, weights in (("df", [d, f], [0.7, 0.3]), ("sc", [d, c], [0.4, 0.6])):
        composite, *_ = compose(parents, weights)
        # same-shaped U-Nets export as one stacked network; the camera parent's wider conditioning cannot stack
        assert composite.stackable == (name == "df")
        save_composite(composite, *_, tmp_path / name)
        report = export_policy(ExportConfig(policy=str(tmp_path / name), out=str(tmp_path / f"{name}.onnx")))
        assert report.parity_max_abs <= 1e-5, report.parity_max_abs
        meta = read_model_meta(tmp_path / f"{name}.onnx")
        assert meta.family == "composed" and meta.policy_config["weights"] == weights
        assert [p["type"] for p in meta.policy_config["parents"]] == ["diffusion", "flow"]
    assert "obs/image_top" in read_model_meta(tmp_path / "sc.onnx").spec.obs
    # the runtime the ROS node uses takes the composite's graph like any model
    from robostack.runtime import load

    rt = load(tmp_path / "df.onnx", backend="onnxruntime", threads=1)
    rng = np.random.default_rng(0)
    frame = {"obs/state": rng.random(3).astype(np.float32), "obs/object": rng.random(2).astype(np.float32)}
    action = rt.select_action(frame)
    assert action.shape == (2,) and np.all(np.abs(action) <= np.array(SPEC.action_high) + 1e-6)


@pytest.mark.parametrize("film_scale", [True, False])
def test_stacked_unets_equal_separate_calls(film_scale):
    torch.manual_seed(0)
    nets = [ConditionalUnet1D(2, 10, 32, (16, 32, 64), 5, 8, film_scale=film_scale).eval() for _ in range(3)]
    assert can_stack(nets)
    x, c = torch.randn(3, 4, 16, 2), torch.randn(3, 4, 10)
    t = torch.tensor([5.0, 50.0, 0.3])[:, None].expand(3, 4)
    with torch.no_grad():
        separate = torch.stack([n(x[i], t[i], c[i]) for i, n in enumerate(nets)])
        assert (stacked_unet(nets, x, t, c) - separate).abs().max() <= 1e-5
    wider = ConditionalUnet1D(2, 12, 32, (16, 32, 64), 5, 8, film_scale=film_scale)
    assert not can_stack([nets[0], wider]) and not can_stack(nets[:1])


# ---------------------------------------------------------------- the CLI as a user calls it


@pytest.fixture(scope="module")
def push_parents(tmp_path_factory, push_store):
    base = tmp_path_factory.mktemp("gpc")
    runs = {}
    for family, steps in (
        ("diffusion", "--policy.num_inference_steps=4"),
        ("flow", "--policy.num_integration_steps=4"),
    ):
        runs[family] = base / family
        run_cli(
            "train", "--policy", family, "--data", push_store, "--out", runs[family], "--steps", "30",
            "--policy.unet.down_dims=[16,32,64]", "--policy.unet.step_embed_dim=32", steps, "--eval.episodes=0",
            check=True,
        )  # fmt: skip
    return runs


def test_compose_and_search_through_the_cli(tmp_path, push_parents):
    d, f = push_parents["diffusion"], push_parents["flow"]
    proc = run_cli("compose", "--policy", d, "--policy", f, "--weights", "0.7,0.3", "--out", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    assert "ddim / 4" in proc.stdout and (tmp_path / "c" / "policy.json").is_file()
    proc = run_cli("eval", "--policy", tmp_path / "c", "--task", "push", "--episodes", "2")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "compose", "search", "--policy", d, "--policy", f, "--task", "push", "--grid", "0.5", "--episodes", "2",
        "--test-episodes", "2", "--out", tmp_path / "s",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "s" / "search.json").read_text())
    assert [s["weights"] for s in report["search"]] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert report["search_seeds"] == [200_000, 200_001] and report["test_seeds"] == [1_000_000, 1_000_001]
    assert len(report["test"]) == 3 and report["test"][-1]["name"].startswith("composite")
    assert (tmp_path / "s" / "search.png").stat().st_size > 0 and (
        tmp_path / "s" / "composed" / "policy.json"
    ).is_file()
    assert not (tmp_path / "s" / "candidate").exists()
    chosen = json.loads((tmp_path / "s" / "composed" / "policy.json").read_text())["config"]["weights"]
    assert chosen == report["chosen"]
    assert "verdict" in report and "selection success" in proc.stdout


def test_bad_compose_input_is_one_line(tmp_path, push_parents, push_store):
    d = push_parents["diffusion"]
    assert_one_line_error(
        run_cli("compose", "--policy", d, "--weights", "1", "--out", tmp_path / "x"), "at least two"
    )
    assert_one_line_error(
        run_cli("compose", "--policy", d, "--policy", d, "--weights", "a,b", "--out", tmp_path / "x"),
        "--weights",
    )
    assert_one_line_error(
        run_cli(
            "compose",
            "--policy",
            d,
            "--policy",
            tmp_path / "nope",
            "--weights",
            "0.5,0.5",
            "--out",
            tmp_path / "x",
        ),
        "no such policy",
    )
    assert_one_line_error(
        run_cli("compose", "search", "--policy", d, "--policy", d, "--task", "lift", "--out", tmp_path / "y",
                "--episodes", "1", "--test-episodes", "1"),
        "policy",
    )  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_composite_deploys_through_onnx_in_the_ros_closed_loop(tmp_path, push_parents):
    """compose -> export -> the ROS policy node driving the simulated robot (real rclpy processes)."""
    d, f = push_parents["diffusion"], push_parents["flow"]
    run_cli(
        "compose", "--policy", d, "--policy", f, "--weights", "0.6,0.4", "--out", tmp_path / "c", check=True
    )
    proc = run_cli("export", "--policy", tmp_path / "c", "--out", tmp_path / "c.onnx")
    assert proc.returncode == 0, proc.stderr
    assert read_model_meta(tmp_path / "c.onnx").policy_config["weights"] == [0.6, 0.4]
    proc = run_cli(
        "eval", "--policy", tmp_path / "c.onnx", "--task", "push", "--episodes", "2", "--ros", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["episodes"] == 2 and res["policy_status"]["commands"] > 0
