"""Gaussian MLP policy: behaviour cloning by maximum likelihood; the actor the RL methods reuse.

The MLP maps the flattened, normalised observation history to the mean and log-std of every action in the chunk
(tanh-bounded mean in normalised space). ``predict_chunk`` returns the mean (deterministic) unless a noise tensor
is given, in which case it returns mean + std * noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from robostack.data.normalize import KeyStats
from robostack.errors import RobostackError
from robostack.policies.activations import Mish
from robostack.policies.base import Policy, PolicyConfig, PolicySpec
from robostack.policies.encoders import ObsEncoder
from robostack.policies.loss_mask import imitated_mean
from robostack.policies.normalizer import Normalizer
from robostack.policies.registry import register_policy


@dataclass
class GaussianConfig(PolicyConfig):
    type: str = "gaussian"
    horizon: int = 8
    """Actions predicted per chunk, counted from the current step (the denoising families also predict the
    T_o - 1 past ones); the training windows are T_o - 1 + horizon long."""
    n_action_steps: int = 8
    n_obs_steps: int = 1
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])
    min_log_std: float = -5.0
    max_log_std: float = 2.0
    image_feature_dim: int = 64
    crop_ratio: float = 0.9

    def __post_init__(self) -> None:
        if self.n_obs_steps < 1 or not 1 <= self.n_action_steps <= self.horizon:
            raise RobostackError(
                f"need n_obs_steps >= 1 and 1 <= n_action_steps ({self.n_action_steps}) <= horizon ({self.horizon})"
            )


@register_policy("gaussian", GaussianConfig)
class GaussianPolicy(Policy):
    config: GaussianConfig
    takes_noise = False  # a robot executes the mean; sampling around it (RL exploration) runs in PyTorch

    def __init__(self, config: GaussianConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        super().__init__(config, spec)
        self.encoder = ObsEncoder(
            Normalizer(stats, [*spec.lowdim_keys, "action"]),
            spec.lowdim_keys,
            spec.image_keys,
            config.image_feature_dim,
            config.crop_ratio,
        )
        per_step = sum(spec.obs[k].shape[0] if spec.obs[k].shape else 1 for k in spec.lowdim_keys)
        per_step += len(spec.image_keys) * config.image_feature_dim
        self.out_dim = config.horizon * spec.action.shape[0]
        layers: list[nn.Module] = []
        d = per_step * config.n_obs_steps
        for h in config.hidden_dims:
            layers += [nn.Linear(d, h), nn.LayerNorm(h), Mish()]
            d = h
        self.trunk = nn.Sequential(*layers)
        self.mean = nn.Linear(d, self.out_dim)
        self.log_std = nn.Linear(d, self.out_dim)

    def export_graph(self, keys: list[str], steps: int | None) -> nn.Module:
        from robostack.policies.families.gaussian_graph import GaussianMeanGraph

        return GaussianMeanGraph(self, keys)

    def window_horizon(self) -> int:
        return self.config.n_obs_steps - 1 + self.config.horizon

    def distribution(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the normalised action chunk, each (B, T_p, Da)."""
        h = self.trunk(self.encoder(self.frames(obs)))
        shape = (
            -1,
            self.config.horizon,
            self.spec.action.shape[0],
        )  # -1: a constant shape in exported graphs
        mean = torch.tanh(self.mean(h)).view(shape)
        log_std = self.log_std(h).clamp(self.config.min_log_std, self.config.max_log_std).view(shape)
        return mean, log_std.exp()

    def squashed_sample(
        self, obs: dict[str, torch.Tensor], deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tanh-squashed Gaussian the RL methods train (SAC's actor): a = tanh(u + sigma * eps) in normalised
        action space, (B, T_p, Da), and log pi(a | s) summed over the chunk, (B,). Its deterministic action tanh(u)
        is ``distribution``'s mean, so what RL trains is what export and the runtimes execute."""
        h = self.trunk(self.encoder(self.frames(obs)))
        shape = (-1, self.config.horizon, self.spec.action.shape[0])
        u = self.mean(h).view(shape)
        log_std = self.log_std(h).clamp(self.config.min_log_std, self.config.max_log_std).view(shape)
        eps = torch.zeros_like(u) if deterministic else torch.randn_like(u)
        z = u + log_std.exp() * eps
        # log N(z; u, sigma) written out (torch.distributions validates its arguments on every call), minus
        # log(1 - tanh(z)^2) written stably as 2 (log 2 - z - softplus(-2 z))
        log_normal = -0.5 * eps.square() - log_std - 0.5 * math.log(2.0 * math.pi)
        log_det = 2.0 * (math.log(2.0) - z - torch.nn.functional.softplus(-2.0 * z))
        log_prob = log_normal - log_det
        return torch.tanh(z), log_prob.flatten(1).sum(-1)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs = {k: batch[k][:, : self.config.n_obs_steps] for k in self.spec.obs}
        start = self.config.n_obs_steps - 1
        target = self.normalizer.normalize(
            "action", batch["action"][:, start : start + self.config.horizon].float()
        )
        mean, std = self.distribution(obs)
        nll = imitated_mean(-torch.distributions.Normal(mean, std).log_prob(target), batch, start)
        mse = imitated_mean((mean - target) ** 2, batch, start)
        return nll, {"loss": nll.detach(), "mse": mse.detach()}

    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        mean, std = self.distribution(obs)
        x = mean if noise is None else mean + std * noise
        actions = self.normalizer.unnormalize("action", x.clamp(-1.0, 1.0))
        if self.config.n_action_steps < self.config.horizon:
            actions = actions[:, : self.config.n_action_steps]
        return self.clip_actions(actions)
