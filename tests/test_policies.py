"""Policy math on hand-computed tensors, normalisation, save/load, overfitting a tiny dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec
from robostack.errors import RobostackError, SpecError
from robostack.policies import PolicySpec, build_policy, load_policy, save_policy
from robostack.policies.normalizer import Normalizer
from robostack.policies.schedulers import (
    DDPMSchedule,
    ddim_coefficients,
    ddim_step,
    ddim_timesteps,
    flow_interpolate,
    flow_times,
    squaredcos_cap_v2,
)
from robostack.policies.unet1d import Conv1dBlock, MatmulConv1d, store_conv_weights_channels_last

TINY_UNET = {"unet": {"down_dims": [16, 32, 64], "step_embed_dim": 32}}


def ks(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return KeyStats(min=lo, max=hi, mean=(lo + hi) / 2, std=(hi - lo) / 4, count=10)


SPEC = PolicySpec(
    obs={"obs/state": FeatureSpec("float32", (3,)), "obs/object": FeatureSpec("float32", (2,))},
    action=FeatureSpec("float32", (2,)),
    action_low=[-1.0, -0.5],
    action_high=[1.0, 0.5],
    control_rate_hz=20.0,
)
STATS = {
    "obs/state": ks([0, 0, 0], [1, 2, 4]),
    "obs/object": ks([-1, -1], [1, 1]),
    "action": ks([-1, -0.5], [1, 0.5]),
}


def test_squared_cosine_schedule_and_ddim_timesteps():
    betas = squaredcos_cap_v2(100)
    ac = torch.cumprod(1 - betas, 0)
    assert betas.shape == (100,) and float(betas.max()) <= 0.999
    assert torch.all(ac[1:] < ac[:-1]) and float(ac[0]) > 0.999 and float(ac[-1]) < 1e-3
    # alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) * pi/2) / cos^2(s/(1+s) * pi/2), s = 0.008
    f = lambda t: math.cos((t / 100 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(ac[49]) == pytest.approx(f(50) / f(0), rel=1e-9)
    assert ddim_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    coeffs = ddim_coefficients(DDPMSchedule(100), 10)
    assert coeffs[0][0] == 90 and coeffs[-1][2] == 1.0 and coeffs[1][1] == pytest.approx(float(ac[80]))


def test_ddim_step_by_hand():
    x = torch.tensor([[0.5, -2.0]])
    eps = torch.tensor([[0.1, 0.3]])
    ab_t, ab_prev = 0.64, 0.81
    # x0 = (x - sqrt(1 - .64) * eps) / sqrt(.64) = (x - .6 eps) / .8 -> [0.55, -2.725] -> clipped [0.55, -1]
    # x_prev = sqrt(.81) * x0 + sqrt(.19) * eps
    want = torch.tensor([[0.9 * 0.55 + math.sqrt(0.19) * 0.1, 0.9 * -1.0 + math.sqrt(0.19) * 0.3]])
    torch.testing.assert_close(ddim_step(x, eps, ab_t, ab_prev, clip_sample=True), want)
    unclipped = 0.9 * (-2.0 - 0.6 * 0.3) / 0.8 + math.sqrt(0.19) * 0.3
    assert float(ddim_step(x, eps, ab_t, ab_prev, clip_sample=False)[0, 1]) == pytest.approx(
        unclipped, rel=1e-6
    )
    # the final step (alpha_bar_prev = 1) returns the x0 estimate itself
    torch.testing.assert_close(ddim_step(x, eps, ab_t, 1.0), torch.tensor([[0.55, -1.0]]))


def test_flow_interpolation_and_euler_integration_are_exact_on_straight_paths():
    x0 = torch.tensor([[1.0, -1.0]])
    noise = torch.tensor([[0.0, 2.0]])
    x_t, u = flow_interpolate(x0, noise, torch.tensor([0.25]))
    torch.testing.assert_close(x_t, torch.tensor([[0.75, -0.25]]))
    torch.testing.assert_close(u, noise - x0)
    x = noise.clone()
    for _t, dt in flow_times(7):  # the exact velocity field of this path is constant: Euler lands on x0
        x = x - dt * u
    torch.testing.assert_close(x, x0)
    assert sum(dt for _, dt in flow_times(7)) == pytest.approx(1.0)


def test_normalizer_round_trip_and_missing_statistics():
    n = Normalizer(STATS, ["obs/state", "action"])
    x = torch.tensor([[0.0, 1.0, 4.0], [0.5, 2.0, 0.0]])
    y = n.normalize("obs/state", x)
    torch.testing.assert_close(y, torch.tensor([[-1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]))
    torch.testing.assert_close(n.unnormalize("obs/state", y), x)
    with pytest.raises(RobostackError, match="obs/object"):
        n.normalize("obs/object", torch.zeros(1, 2))
    with pytest.raises(RobostackError, match="no normalisation statistics for key\\(s\\) obs/missing"):
        Normalizer(STATS, ["obs/missing"])
    const = Normalizer({"a": ks([2.0], [2.0])}, ["a"])  # a constant dimension: 0 in, its value out
    assert float(const.normalize("a", torch.tensor([2.0]))) == 0.0
    assert float(const.unnormalize("a", torch.tensor([0.3]))) == 2.0


def test_matmul_conv_matches_torch_conv():
    conv = torch.nn.Conv1d(6, 5, 5, padding=2)
    mm = MatmulConv1d(6, 5, 5, padding=2)
    mm.load_state_dict(conv.state_dict())
    for batch in (3, 64):  # the GEMM path and the batched (native) path
        x = torch.randn(batch, 6, 16, requires_grad=True)
        torch.testing.assert_close(mm(x), conv(x), atol=1e-5, rtol=1e-5)
        (g_mm,) = torch.autograd.grad(mm(x).square().sum(), x)
        (g_conv,) = torch.autograd.grad(conv(x).square().sum(), x)
        torch.testing.assert_close(g_mm, g_conv, atol=1e-4, rtol=1e-4)


def test_compiled_conv_block_at_training_batch_matches_eager():
    # torch.compile lays the batched convolutions out channels-last; values and gradients must not move.
    block = Conv1dBlock(8, 16, 5, 8)
    compiled = torch.compile(block)
    x = torch.randn(32, 8, 16, requires_grad=True)
    out_eager, out_comp = block(x), compiled(x)
    torch.testing.assert_close(out_comp, out_eager, atol=1e-5, rtol=1e-4)
    (g_eager,) = torch.autograd.grad(out_eager.square().sum(), x)
    (g_comp,) = torch.autograd.grad(out_comp.square().sum(), x)
    torch.testing.assert_close(g_comp, g_eager, atol=1e-4, rtol=1e-4)


def test_channels_last_conv_weights_change_layout_only():
    block = Conv1dBlock(8, 16, 5, 8)
    restrided = Conv1dBlock(8, 16, 5, 8)
    restrided.load_state_dict(block.state_dict())
    assert store_conv_weights_channels_last(restrided) == 1
    w = restrided.block[0].weight
    assert w.stride() == (5 * 8, 1, 8) and torch.equal(w, block.block[0].weight)
    x = torch.randn(32, 8, 16)
    compiled = torch.compile(restrided)
    torch.testing.assert_close(compiled(x), block(x), atol=1e-5, rtol=1e-4)
    compiled(x).square().sum().backward()
    block(x).square().sum().backward()
    # The gradient arrives in the parameter's own layout (nothing to transpose) and with the same values.
    assert w.grad.stride() == w.stride()
    torch.testing.assert_close(w.grad, block.block[0].weight.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["diffusion", "flow", "gaussian"])
def test_save_load_round_trip_is_exact(tmp_path, family):
    cfg = TINY_UNET if family != "gaussian" else {"hidden_dims": [32, 32]}
    p = build_policy(family, cfg, SPEC, STATS).eval()
    save_policy(p, tmp_path / "p", STATS)
    q = load_policy(tmp_path / "p")
    for (k, a), (k2, b) in zip(p.state_dict().items(), q.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    obs = {"obs/state": torch.rand(2, 2, 3), "obs/object": torch.rand(2, 2, 2)}
    noise = torch.randn(2, p.config.horizon, 2)
    out = p.predict_chunk(obs, noise=noise)
    assert torch.equal(out, q.predict_chunk(obs, noise=noise))
    assert out.shape == (2, p.config.n_action_steps, 2)
    assert torch.all(out[..., 1].abs() <= 0.5)  # clipped to the action bounds


def test_incompatible_checkpoint_is_refused(tmp_path):
    p = build_policy("diffusion", TINY_UNET, SPEC, STATS)
    save_policy(p, tmp_path / "p", STATS)
    meta = json.loads((tmp_path / "p" / "policy.json").read_text())
    meta["config"]["unet"]["down_dims"] = [16, 32, 128]
    (tmp_path / "p" / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(RobostackError, match="incompatible with its policy config"):
        load_policy(tmp_path / "p")
    (tmp_path / "p" / "normalization.json").write_text(json.dumps({"action": STATS["action"].to_json()}))
    with pytest.raises(RobostackError, match="normalization.json does not match"):
        load_policy(tmp_path / "p")


@pytest.mark.parametrize("family", ["diffusion", "flow"])
def test_set_num_steps_changes_the_network_calls_per_chunk(family):
    p = build_policy(family, TINY_UNET, SPEC, STATS).eval()
    calls = []
    p.unet.register_forward_hook(lambda *_: calls.append(1))
    obs = {k: torch.zeros(1, 2, *f.shape) for k, f in SPEC.obs.items()}
    p.set_num_steps(3)
    with torch.no_grad():
        p.predict_chunk(obs)
    assert len(calls) == 3 and p.num_steps == 3
    with pytest.raises(RobostackError, match="denoising steps"):
        p.set_num_steps(0)
    if family == "diffusion":
        with pytest.raises(RobostackError, match=r"\[1, 100\]"):
            p.set_num_steps(101)


def test_select_action_owns_history_and_queue():
    p = build_policy("diffusion", {**TINY_UNET, "n_action_steps": 4}, SPEC, STATS).eval()
    obs = {"obs/state": np.array([0.1, 0.2, 0.3], np.float32), "obs/object": np.zeros(2, np.float32)}
    plans = 0
    for _ in range(9):
        plans += p.will_plan
        a = p.select_action(obs)
        assert a.shape == (2,) and np.all(np.abs(a) <= [1.0, 0.5])
    assert plans == 3  # re-plans every n_action_steps
    with pytest.raises(SpecError, match="obs/object"):
        p.select_action({"obs/state": obs["obs/state"]})
    with pytest.raises(SpecError, match="NaN"):
        p.select_action({**obs, "obs/state": np.array([np.nan, 0, 0], np.float32)})
    with pytest.raises(SpecError, match="shape"):
        p.select_action({**obs, "obs/state": np.zeros(4, np.float32)})


@pytest.mark.parametrize("family", ["gaussian", "diffusion", "flow"])
def test_overfits_a_tiny_dataset(family):
    torch.manual_seed(0)
    cfg = {"hidden_dims": [64, 64], "horizon": 4, "n_action_steps": 4} if family == "gaussian" else TINY_UNET
    p = build_policy(family, {**cfg, "n_obs_steps": 1} if family != "gaussian" else cfg, SPEC, STATS)
    h = p.window_horizon()
    # two observation -> action-sequence pairs the policy must tell apart
    obs = {
        "obs/state": torch.tensor([[[0.0, 0.0, 0.0]], [[1.0, 2.0, 4.0]]]),
        "obs/object": torch.zeros(2, 1, 2),
    }
    acts = torch.stack([torch.full((h, 2), -0.4), torch.full((h, 2), 0.4)])
    batch = {**{k: v.repeat(16, 1, 1) for k, v in obs.items()}, "action": acts.repeat(16, 1, 1)}
    opt = torch.optim.Adam(p.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = p.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    p.eval()
    with torch.no_grad():
        out = p.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    target = acts[:, : out.shape[1]].clamp(torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5]))
    assert float((out - target).abs().max()) < 0.15, out  # the two sequences are 0.8 apart


def test_exp_mish_is_mish_in_value_and_gradient():
    from robostack.policies.activations import Mish, exp_mish

    x = torch.cat([torch.linspace(-40, 40, 20001), torch.tensor([-1e4, 1e4, 0.0])]).requires_grad_()
    ref = torch.nn.functional.mish(x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    got = exp_mish(x)
    (g_got,) = torch.autograd.grad(got.sum(), x)
    assert torch.isfinite(got).all() and torch.isfinite(g_got).all()  # no overflow at large inputs
    assert (got - ref).abs().max() < 1e-5 and (g_got - g_ref).abs().max() < 1e-5
    assert torch.equal(Mish()(x), ref)  # eager runs PyTorch's own kernel


def test_imitated_mean_by_hand():
    from robostack.policies.loss_mask import imitated_mean

    err = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]], [[3.0, 3.0], [4.0, 4.0], [5.0, 5.0]]])
    flags = torch.tensor([[True, False, True, True], [False, True, True, False]])
    # window steps 1..3 of each row: [F, T, T] and [T, T, F] -> elements 2, 9, 3, 4 (each twice)
    assert float(imitated_mean(err, {"imitate": flags}, start=1)) == pytest.approx((2 + 9 + 3 + 4) / 4)
    assert float(imitated_mean(err, {})) == pytest.approx(float(err.mean()))
    none = torch.zeros(2, 3, dtype=torch.bool)
    assert float(imitated_mean(err, {"imitate": none})) == 0.0  # no NaN from an all-perturbation batch


@pytest.mark.parametrize("family", ["gaussian", "diffusion", "flow", "lerobot"])
def test_flagged_steps_are_left_out_of_every_familys_loss(family):
    if family == "lerobot":
        from robostack.compare.lerobot_diffusion import LeRobotDiffusion

        p = LeRobotDiffusion(SPEC, STATS, {"n_obs_steps": 2, **TINY_UNET})
        h = p.config.horizon
        loss_of = lambda b: p.compute_loss(b)  # noqa: E731
    else:
        cfg = {"hidden_dims": [32], "horizon": 4, "n_action_steps": 4} if family == "gaussian" else TINY_UNET
        p = build_policy(family, {**cfg, "n_obs_steps": 2}, SPEC, STATS)
        h = p.window_horizon()
        loss_of = lambda b: p.compute_loss(b)[0]  # noqa: E731
    g = torch.Generator().manual_seed(1)
    batch = {
        "obs/state": torch.rand(3, 2, 3, generator=g),
        "obs/object": torch.rand(3, 2, 2, generator=g),
        "action": torch.rand(3, h, 2, generator=g) - 0.5,
    }
    # A denoiser sees a flagged step's (noised) value as input context for its neighbours, as LeRobot's padding mask
    # does, so invariance is checked on a window flagged throughout; partial flags are weighed per element.
    flags = torch.ones(3, h, dtype=torch.bool)
    flags[0] = False
    flags[2, -2:] = False
    garbage = batch["action"].clone()
    garbage[0] = 7.0

    def loss(actions, imitate):
        torch.manual_seed(0)  # the same noise and noise levels for every call
        with torch.no_grad():
            return float(loss_of({**batch, "action": actions, "imitate": imitate}))

    # Whatever a flagged window holds, the loss is the same; unflag it and the loss sees it.
    assert loss(garbage, flags) == pytest.approx(loss(batch["action"], flags), rel=1e-6)
    everything = torch.ones_like(flags)
    assert abs(loss(garbage, everything) - loss(batch["action"], everything)) > 1e-3
    partial = flags.clone()
    partial[0] = True
    assert loss(batch["action"], partial) != pytest.approx(loss(batch["action"], torch.ones_like(flags)))


def test_obs_noise_perturbs_training_only():
    torch.manual_seed(0)
    noisy = build_policy("diffusion", {**TINY_UNET, "obs_noise": 0.1}, SPEC, STATS)
    clean = build_policy("diffusion", TINY_UNET, SPEC, STATS)
    clean.load_state_dict(noisy.state_dict())
    obs = {"obs/state": torch.rand(4, 2, 3), "obs/object": torch.rand(4, 2, 2)}
    noisy.train()
    a, b = noisy.encoder(obs), noisy.encoder(obs)
    assert 0.03 < float((a - b).std()) < 0.3  # two draws of std-0.1 noise differ by ~0.14
    noisy.eval()
    clean.eval()
    torch.testing.assert_close(noisy.encoder(obs), clean.encoder(obs), rtol=0, atol=0)
    with pytest.raises(RobostackError, match="obs_noise"):
        build_policy("diffusion", {**TINY_UNET, "obs_noise": -0.1}, SPEC, STATS)


def test_ema_update_by_hand_and_after_an_in_place_load():
    from robostack.train.optim import EMAUpdater

    model, ema = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    model.register_buffer("count", torch.tensor([3.0]))
    ema.register_buffer("count", torch.tensor([0.0]))
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        ema.weight.copy_(torch.tensor([[5.0, 6.0]]))
    updater = EMAUpdater(ema, model, power=0.75, max_decay=0.9999)
    updater.update(0)  # decay 0 at the first step: the average starts at the model
    assert torch.equal(ema.weight, model.weight) and float(ema.count) == 3.0
    # A resume loads weights into the same parameter objects; the updater's lists must still see them.
    model.load_state_dict(
        {"weight": torch.tensor([[3.0, -1.0]]), "bias": torch.zeros(1), "count": torch.ones(1)}
    )
    updater.update(9)
    d = 1.0 - 10.0**-0.75
    assert d == pytest.approx(updater.decay(9))
    expect = torch.tensor([[d * 1.0 + (1 - d) * 3.0, d * 2.0 + (1 - d) * -1.0]])
    assert torch.allclose(ema.weight, expect, atol=1e-6) and float(ema.count) == 1.0
    assert updater.decay(10**9) == 0.9999
