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

from robostack.algos.chunk_rollout import ChunkLearner, OnPolicyConfig, on_policy_finetune
from robostack.algos.ppo import clipped_policy_loss
from robostack.algos.registry import register_algorithm
from robostack.errors import RobostackError

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
    min_std: float = 0.1
    """Floor on the policy's standard deviation (normalised actions) when drawing and scoring, as DPPO's noise floors
    (sigma_min 0.1), so both methods explore and score alike."""


class GaussianPPOLearner(ChunkLearner):
    def __init__(self, cfg: PPOConfig, policy: Any) -> None:
        if policy.family != "gaussian":
            raise RobostackError(f"ppo fine-tunes gaussian-family policies, not a {policy.family} policy")
        super().__init__(cfg, policy, policy.parameters())
        self.t_a = policy.config.n_action_steps

    def log_prob(self, obs: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """log pi(x | s) summed over the executed rows' elements (B,)."""
        mean, std = self.policy.distribution(obs)
        std = std.clamp_min(self.cfg.min_std)
        lp = -0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * np.log(2 * np.pi)
        return lp[:, : self.t_a].sum(dim=(1, 2))

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], gen: torch.Generator
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        mean, std = self.policy.distribution(obs)
        std = std.clamp_min(self.cfg.min_std)
        x = mean + std * torch.randn(mean.shape, generator=gen)
        actions = self.policy.normalizer.unnormalize("action", x.clamp(-1.0, 1.0))[:, : self.t_a]
        return self.policy.clip_actions(actions).numpy(), x, self.log_prob(obs, x)

    def policy_loss(self, obs: dict, sample: torch.Tensor, old: torch.Tensor, adv: torch.Tensor) -> tuple:
        return clipped_policy_loss(self.log_prob(obs, sample), old, adv, self.cfg.clip)


@register_algorithm("ppo", "finetune", PPOConfig, "Gaussian-PPO: DPPO's baseline on the gaussian family")
def finetune(
    cfg: PPOConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    def make(policy: Any) -> GaussianPPOLearner:
        return GaussianPPOLearner(cfg, policy)

    return on_policy_finetune(cfg, Path(out), make, PPO_SEEDS, resume, progress)
