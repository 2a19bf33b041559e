"""Gaussian-PPO: DPPO's baseline. PPO on the Gaussian MLP family's action-chunk distribution, with the same vector
environment, chunked rollouts, reward, critic, GAE and iteration budget as ``dppo``.

The policy draws x = mean + std * eps over the normalised chunk; the executed actions are its first T_a rows
(clamped to [-1, 1] and unnormalised); the log-likelihood of a decision is the sum over those rows' elements. The
result is an ordinary gaussian policy folder (its mean is what export and the runtimes execute).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.chunk_rollout import OnPolicyConfig, Rollout, on_policy_finetune, state_features
from robostack.algos.ppo import clipped_policy_loss, explained_variance, gae, value_loss
from robostack.algos.registry import register_algorithm
from robostack.errors import RobostackError
from robostack.policies.critics import VEnsemble

PPO_SEEDS = 5_000_000
"""Gaussian-PPO's training episodes take seeds from here (above every evaluation range)."""


@dataclass
class PPOConfig(OnPolicyConfig):
    algo: str = "ppo"
    gamma: float = 0.999
    gae_lambda: float = 0.95
    clip: float = 0.2
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 256
    """Decisions per minibatch."""


class GaussianPPOLearner:
    def __init__(self, cfg: PPOConfig, policy: Any) -> None:
        if policy.family != "gaussian":
            raise RobostackError(f"ppo fine-tunes gaussian-family policies, not a {policy.family} policy")
        if policy.spec.image_keys:
            raise RobostackError("ppo here covers low-dim observations only")
        self.cfg, self.policy = cfg, policy
        self.keys = policy.spec.lowdim_keys
        width = sum(int(np.prod(policy.spec.obs[k].shape)) for k in self.keys)
        self.critic = VEnsemble(width, 1, cfg.critic_hidden).to(cfg.device)
        self.actor_opt = torch.optim.Adam(policy.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.t_a = policy.config.n_action_steps

    def state_objects(self) -> dict[str, Any]:
        return {
            "actor": self.policy,
            "critic": self.critic,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
        }

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """V of the environment state (B,)."""
        return self.critic(state_features(self.policy.normalizer, self.keys, obs))[0]

    def log_prob(self, obs: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        mean, std = self.policy.distribution(obs)
        lp = -0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * np.log(2 * np.pi)
        return lp[:, : self.t_a].sum(dim=(1, 2))

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], gen: torch.Generator
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        mean, std = self.policy.distribution(obs)
        x = mean + std * torch.randn(mean.shape, generator=gen)
        actions = self.policy.normalizer.unnormalize("action", x.clamp(-1.0, 1.0))[:, : self.t_a]
        return self.policy.clip_actions(actions).numpy(), x, self.log_prob(obs, x)

    def update(self, ro: Rollout, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = gae(ro.reward, ro.values, ro.terminated, ro.truncated, ro.final_values[-1], cfg.gamma,
                       cfg.gae_lambda, bootstrap_values=ro.final_values)  # fmt: skip
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 - (S, N, ...) -> (S*N, ...)
        obs = {k: flat(v) for k, v in ro.obs.items()}
        sample, old, adv, ret = flat(ro.sample), flat(ro.logp), flat(adv), flat(ret)
        n = adv.shape[0]
        metrics: dict[str, float] = {}
        for _ in range(cfg.epochs):
            for idx in np.array_split(rng.permutation(n), max(1, n // cfg.batch_size)):
                i = torch.as_tensor(idx)
                mb_obs = {k: v[i] for k, v in obs.items()}
                a = adv[i]
                a = (a - a.mean()) / (a.std() + 1e-8) if len(idx) > 1 else a
                p_loss, pm = clipped_policy_loss(self.log_prob(mb_obs, sample[i]), old[i], a, cfg.clip)
                v_loss, vm = value_loss(self.value(mb_obs), ret[i])
                self.actor_opt.zero_grad(set_to_none=True)
                self.critic_opt.zero_grad(set_to_none=True)
                (p_loss + v_loss).backward()
                self.actor_opt.step()
                self.critic_opt.step()
                metrics = {k: float(v) for k, v in {**pm, **vm}.items()}
        metrics["explained_variance"] = explained_variance(flat(ro.values), ret)
        return metrics


@register_algorithm("ppo", "finetune", PPOConfig, "Gaussian-PPO: DPPO's baseline on the gaussian family")
def finetune(
    cfg: PPOConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    def make(policy: Any) -> GaussianPPOLearner:
        return GaussianPPOLearner(cfg, policy)

    return on_policy_finetune(cfg, Path(out), make, PPO_SEEDS, resume, progress)
