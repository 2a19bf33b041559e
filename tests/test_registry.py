"""A policy family plugs in at one place: a class with ``@register_policy`` in a module nobody else edits is trained
by ``robostack train`` (its CLI choices included), exported with a parity check, and run by both runtimes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robostack.algos.registry import algorithm_names, get_algorithm
from robostack.errors import RobostackError
from robostack.export import ExportConfig, export_policy, read_model_meta
from robostack.export.onnx_export import random_inputs
from robostack.policies import load_policy
from robostack.policies.base import Policy, PolicyConfig
from robostack.policies.encoders import ObsEncoder
from robostack.policies.normalizer import Normalizer
from robostack.policies.registry import policy_names, register_policy
from robostack.runtime import load

from conftest import assert_one_line_error, run_cli_here


@dataclass
class LinearChunkConfig(PolicyConfig):
    type: str = "test-linear"
    horizon: int = 4
    n_action_steps: int = 4
    n_obs_steps: int = 1


@register_policy("test-linear", LinearChunkConfig)
class LinearChunkPolicy(Policy):
    """A one-shot linear map from the normalised observation to a tanh-bounded action chunk."""

    takes_noise = False

    def __init__(self, config, spec, stats) -> None:
        super().__init__(config, spec)
        self.encoder = ObsEncoder(
            Normalizer(stats, [*spec.lowdim_keys, "action"]), spec.lowdim_keys, {}, 0, 1.0
        )
        width = sum(int(np.prod(spec.obs[k].shape)) for k in spec.lowdim_keys) * config.n_obs_steps
        self.linear = nn.Linear(width, config.horizon * spec.action.shape[0])

    def window_horizon(self) -> int:
        return self.config.n_obs_steps - 1 + self.config.horizon

    def _chunk(self, obs):
        out = torch.tanh(self.linear(self.encoder(self.frames(obs, first=True))))
        return out.view(-1, self.config.horizon, self.spec.action.shape[0])

    def compute_loss(self, batch):
        start = self.config.n_obs_steps - 1
        target = self.normalizer.normalize("action", batch["action"][:, start : start + self.config.horizon])
        loss = ((self._chunk(batch) - target) ** 2).mean()
        return loss, {"loss": loss.detach()}

    def predict_chunk(self, obs, noise=None, generator=None, num_steps=None):
        actions = self.normalizer.unnormalize("action", self._chunk(obs))
        return self.clip_actions(actions[:, : self.config.n_action_steps])


def test_a_registered_family_is_trained_exported_and_run_everywhere(tmp_path, push_store):
    assert "test-linear" in policy_names()
    run = tmp_path / "run"
    proc = run_cli_here(
        "train", "--policy", "test-linear", "--data", push_store, "--out", run, "--steps", "20",
        "--eval.episodes=0", "--log_every=5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    policy = load_policy(run / "checkpoints" / "step_00000020")
    assert isinstance(policy, LinearChunkPolicy) and policy.family == "test-linear"
    report = export_policy(ExportConfig(policy=str(run), out=str(tmp_path / "m.onnx")))
    assert report.family == "test-linear" and report.steps == 0 and report.parity_max_abs <= 1e-5
    meta = read_model_meta(tmp_path / "m.onnx")
    assert meta.family == "test-linear" and meta.noise == "none" and meta.inputs == list(policy.spec.obs)
    feed = random_inputs(policy, 3, np.random.default_rng(1))
    with torch.no_grad():
        ref = policy.predict_chunk({k: torch.as_tensor(v) for k, v in feed.items()}).numpy()
    for backend in ("onnxruntime", "torch"):
        got = load(tmp_path / "m.onnx", device="cpu", backend=backend).predict_chunk(feed)
        assert np.abs(got - ref).max() <= 1e-5, backend
    assert_one_line_error(
        run_cli_here("export", "--policy", run, "--out", tmp_path / "s.onnx", "--steps", "3"), "no denoising"
    )


def test_unknown_names_list_the_registered_ones(tmp_path):
    assert "bc" in algorithm_names("train")
    assert get_algorithm("bc", "train").config_cls.__name__ == "TrainConfig"
    try:
        get_algorithm("nope", "train")
    except RobostackError as exc:
        assert "choose from bc" in str(exc)
    else:
        raise AssertionError("an unknown algorithm was accepted")
    bad = run_cli_here("train", "--algo", "nope", "--data", "x.zarr", "--out", tmp_path / "r")
    assert bad.returncode == 2 and "choose from 'bc'" in bad.stderr
    bad = run_cli_here("train", "--policy", "nope", "--data", "x.zarr", "--out", tmp_path / "r")
    assert bad.returncode == 2 and "'test-linear'" in bad.stderr and "'diffusion'" in bad.stderr
