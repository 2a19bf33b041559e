"""FamO2O's deployable pair (Wang et al. 2023): a balance model that picks the policy-improvement strength beta for
the current state, and a universal policy that acts given the state and that beta.

- universal policy pi_u(a | s, beta): a Gaussian MLP on [features(s) ; enc(beta)] with a tanh-bounded mean (IQL's
  actor), enc(beta) = [sin(beta / 10000^(2i/6)), cos(...)] for i = 0, 1, 2;
- balance model pi_b(beta | s): a tanh-Gaussian over u in (-1, 1), beta = (u + 1) / 2 * (beta_max - beta_min) +
  beta_min.

At deployment beta is the balance model's mode and the action is the universal policy's mean, one graph from state to
action (``export_graph`` also returns beta, an optional output a robot logs). Training is ``robostack train --algo
famo2o`` (``robostack.algos.famo2o``), never behaviour cloning, so the family is not offered to ``--algo bc``.
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
from robostack.policies.normalizer import Normalizer
from robostack.policies.registry import register_policy

BETA_FREQS = 3  # enc(beta) has 2 * 3 features


def encode_beta(beta: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) -> (B, 6): [sin(beta / 10000^(2i/6)), cos(beta / 10000^(2i/6))], i = 0, 1, 2."""
    b = beta.reshape(-1, 1)
    i = torch.arange(BETA_FREQS, dtype=b.dtype, device=b.device)
    x = b / torch.pow(torch.tensor(10000.0, dtype=b.dtype, device=b.device), 2.0 * i / (2 * BETA_FREQS))
    return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


def squash_beta(z: torch.Tensor, beta_min: float, beta_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-tanh z -> (u = tanh z, beta in (beta_min, beta_max))."""
    u = torch.tanh(z)
    return u, (u + 1.0) * 0.5 * (beta_max - beta_min) + beta_min


def tanh_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(u = tanh z) for z ~ N(mean, exp(log_std)), per element: the Gaussian minus log(1 - tanh(z)^2), the
    latter written stably as 2 (log 2 - z - softplus(-2 z))."""
    eps = (z - mean) / log_std.exp()
    log_normal = -0.5 * eps.square() - log_std - 0.5 * math.log(2.0 * math.pi)
    return log_normal - 2.0 * (math.log(2.0) - z - nn.functional.softplus(-2.0 * z))


def _mlp(d: int, hidden: list[int]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d, h), nn.LayerNorm(h), Mish()]
        d = h
    return nn.Sequential(*layers), d


@dataclass
class FamO2OConfig(PolicyConfig):
    type: str = "famo2o"
    horizon: int = 1
    n_obs_steps: int = 1
    n_action_steps: int = 1
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    """Universal policy trunk (FamO2O: 256 x 256)."""
    balance_hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    beta_min: float = 8.0
    beta_max: float = 14.0
    """beta range (FamO2O on AntMaze-style sparse rewards: [8, 14]; IQL alone uses 10)."""
    min_log_std: float = -5.0
    max_log_std: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.horizon != 1 or self.n_action_steps != 1:
            raise RobostackError("a famo2o policy acts one step at a time (horizon 1, n_action_steps 1)")
        if not self.beta_min < self.beta_max:
            raise RobostackError(f"need beta_min < beta_max, got [{self.beta_min}, {self.beta_max}]")


@register_policy("famo2o", FamO2OConfig)
class FamO2OPolicy(Policy):
    config: FamO2OConfig
    trainable = False  # trained by `robostack train --algo famo2o`, not behaviour cloning
    takes_noise = False  # a robot executes the mean at the balance model's beta
    extra_outputs = ("beta",)

    def __init__(self, config: FamO2OConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        super().__init__(config, spec)
        if spec.image_keys:
            raise RobostackError("famo2o covers low-dim observations only")
        self.encoder = ObsEncoder(Normalizer(stats, [*spec.lowdim_keys, "action"]), spec.lowdim_keys, {})
        per_step = sum(spec.obs[k].shape[0] if spec.obs[k].shape else 1 for k in spec.lowdim_keys)
        self.feature_dim = per_step * config.n_obs_steps
        da = spec.action.shape[0]
        self.trunk, d = _mlp(self.feature_dim + 2 * BETA_FREQS, config.hidden_dims)
        self.mean = nn.Linear(d, da)
        self.log_std = nn.Linear(d, da)
        self.balance_trunk, d = _mlp(self.feature_dim, config.balance_hidden_dims)
        self.balance_mean = nn.Linear(d, 1)
        self.balance_log_std = nn.Linear(d, 1)

    # -------------------------------------------------------------- the two networks
    def features(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder(self.frames(obs))

    def universal(self, features: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the normalised action (B, Da) given beta (B,)."""
        h = self.trunk(torch.cat([features, encode_beta(beta)], dim=-1))
        log_std = self.log_std(h).clamp(self.config.min_log_std, self.config.max_log_std)
        return torch.tanh(self.mean(h)), log_std

    def balance(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the balance model's pre-tanh z, each (B,)."""
        h = self.balance_trunk(features)
        log_std = self.balance_log_std(h).clamp(self.config.min_log_std, self.config.max_log_std)
        return self.balance_mean(h)[:, 0], log_std[:, 0]

    def sample_beta(
        self, features: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta (B,), log pi_b(u | s) (B,)), reparameterised; deterministic: the mode tanh(mean)."""
        mean, log_std = self.balance(features)
        z = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        _, beta = squash_beta(z, self.config.beta_min, self.config.beta_max)
        return beta, tanh_gaussian_log_prob(z, mean, log_std)

    def act(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Deployment: (normalised action (B, Da) = the universal mean at the balance model's mode, beta (B,))."""
        f = self.features(obs)
        beta, _ = self.sample_beta(f, deterministic=True)
        return self.universal(f, beta)[0], beta

    # -------------------------------------------------------------- the policy contract
    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise RobostackError("a famo2o policy is trained by `robostack train --algo famo2o`")

    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        return self._raw(self.act(obs)[0])

    def _raw(self, a: torch.Tensor) -> torch.Tensor:
        return self.clip_actions(self.normalizer.unnormalize("action", a.clamp(-1.0, 1.0)).unsqueeze(1))

    def export_graph(self, keys: list[str], steps: int | None) -> nn.Module:
        return FamO2OGraph(self, keys)


class FamO2OGraph(nn.Module):
    """(obs_1, ..., obs_n) -> (executed action (B, 1, Da), beta (B, 1)): both networks in one graph."""

    def __init__(self, policy: FamO2OPolicy, keys: list[str]) -> None:
        super().__init__()
        self.policy, self.keys = policy, keys

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, beta = self.policy.act(dict(zip(self.keys, inputs, strict=True)))
        return self.policy._raw(a), beta.unsqueeze(-1)
