"""The residual-MLP denoiser backbone: same contract as the U-Net for the diffusion and flow families, exact ONNX
export, and DPPO through the CLI on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robostack.errors import RobostackError
from robostack.export import ExportConfig, export_policy
from robostack.export.onnx_export import random_inputs
from robostack.policies import build_policy, load_policy, save_policy
from robostack.policies.loading import resolve_policy_folder
from robostack.policies.mlp_denoiser import MLPDenoiser
from robostack.runtime import load

from conftest import run_cli
from test_policies import SPEC, STATS

MLP = {"unet": {"backbone": "mlp", "mlp_hidden": 32, "step_embed_dim": 8}, "horizon": 5, "n_action_steps": 4}
CONFIGS = {
    "diffusion": {**MLP, "num_inference_steps": 3},
    "flow": {**MLP, "num_integration_steps": 2},
}


def test_the_denoiser_maps_a_chunk_to_a_chunk_and_reads_every_input():
    torch.manual_seed(0)
    net = MLPDenoiser(action_dim=2, horizon=5, global_cond_dim=6, step_embed_dim=8, hidden=32, blocks=2)
    x, t, c = torch.randn(3, 5, 2, requires_grad=True), torch.tensor([0.0, 5.0, 9.0]), torch.randn(3, 6)
    out = net(x, t, c)
    assert out.shape == (3, 5, 2)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # The step and the conditioning both change the prediction (neither input is dropped on the way in).
    assert not torch.allclose(net(x, t + 1, c), out)
    assert not torch.allclose(net(x, t, c + 1), out)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_mlp_backbone_policies_export_with_parity(tmp_path, family):
    torch.manual_seed(0)
    pol = build_policy(family, CONFIGS[family], SPEC, STATS)
    assert isinstance(pol.unet, MLPDenoiser)  # horizon 5: no U-Net divisibility rule for this backbone
    folder = tmp_path / family
    save_policy(pol, folder, STATS, {"train_config": {"policy": CONFIGS[family]}})
    again = load_policy(folder, "cpu").eval()
    assert isinstance(again.unet, MLPDenoiser)
    report = export_policy(ExportConfig(policy=str(folder), out=str(tmp_path / f"{family}.onnx")))
    assert report.parity_max_abs <= 1e-5
    feed = random_inputs(again, 4, np.random.default_rng(7))
    noise = feed.pop("noise")
    got = load(tmp_path / f"{family}.onnx", device="cpu").predict_chunk(feed, noise=noise)
    with torch.no_grad():
        ref = again.predict_chunk(
            {k: torch.as_tensor(v) for k, v in feed.items()}, noise=torch.as_tensor(noise)
        )
    assert got.shape == (4, 4, 2) and np.abs(got - ref.numpy()).max() <= 1e-5


def test_an_unknown_backbone_is_refused():
    with pytest.raises(RobostackError, match="unet.backbone must be 'unet' or 'mlp'"):
        build_policy("diffusion", {"unet": {"backbone": "transformer"}}, SPEC, STATS)


def test_dppo_fine_tunes_the_mlp_backbone_through_the_cli(tmp_path, push_store):
    bc = tmp_path / "bc"
    run_cli(
        "train", "--config", "configs/policies/diffusion_mlp_push.yaml", "--data", push_store, "--out", bc,
        "--steps", "20", "--policy.unet.mlp_hidden=32", "--eval.episodes=0", check=True,
    )  # fmt: skip
    out = tmp_path / "dppo"
    proc = run_cli(
        "finetune", "--algo", "dppo", "--from", bc, "--task", "push", "--envs", "4", "--iterations", "1", "--out",
        out, "--steps_per_iteration=6", "--epochs=2", "--batch_size=12", "--eval_every=0", "--eval_episodes=0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    before = load_policy(resolve_policy_folder(bc), "cpu").unet.state_dict()
    after = load_policy(resolve_policy_folder(out), "cpu").unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert run_cli("export", "--policy", out, "--out", tmp_path / "dppo.onnx").returncode == 0
