"""DPPO (Ren et al., ICLR 2025): PPO over the denoising chain of a behaviour-cloned diffusion policy, online in N
simulated copies with the task's sparse success reward.

Each decision draws a denoising chain with the stochastic sampler (``policies.stochastic_sampler``: DDIM with
eta = 1, every step an exact Gaussian, DPPO's noise floors and clipping); the executed slice of its end is the
environment action, T_a steps per decision (``VectorEnv.step_chunk``). A frozen copy of the starting policy runs the
first K - K' denoising steps, the trainable copy the last K'. The critic sees the environment state only (the last
observation frame); GAE runs over decisions; denoising step k of a decision gets gamma_denoise^k times its
advantage; each step's ratio is clipped with its own epsilon (``algos.ppo.clip_schedule``). Log-likelihoods are
clamped to [-5, 2] and averaged over the executed actions' elements, one ratio per denoising step (authors' code).
What ships is an ordinary diffusion policy folder: evaluation uses the deterministic sampler, and ``eval``,
``export``, the runtimes and the ROS node take it unchanged.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.chunk_rollout import ChunkLearner, OnPolicyConfig, on_policy_finetune
from robostack.algos.ppo import (
    clip_schedule,
    clipped_policy_loss,
    denoising_discount,
)
from robostack.algos.registry import register_algorithm
from robostack.errors import RobostackError
from robostack.policies.stochastic_sampler import StochasticSampling, sample_chain, score_chain

DPPO_SEEDS = 4_000_000
"""DPPO's training episodes take seeds from here (above every evaluation range and the other online methods')."""
LOGP_MIN, LOGP_MAX = -5.0, 2.0


@dataclass
class DPPOConfig(OnPolicyConfig):
    """Defaults after DPPO's Robomimic state configs (``ft_ppo_diffusion_mlp``), sized down for a CPU."""

    algo: str = "dppo"
    ft_denoising_steps: int = 10
    """K': denoising steps fine-tuned (the last ones); the frozen starting policy runs the others."""
    sampling: StochasticSampling = field(default_factory=StochasticSampling)
    gamma: float = 0.999
    """Discount per decision."""
    gae_lambda: float = 0.95
    gamma_denoise: float = 0.99
    clip_base: float = 0.001
    """clip_ploss_coef_base: epsilon of the noisiest fine-tuned step."""
    clip: float = 0.01
    """clip_ploss_coef: epsilon of the last step."""
    clip_rate: float = 3.0
    actor_lr: float = 1e-5
    critic_lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 256
    """Decisions per minibatch (each carries its K' denoising steps)."""
    ratio_over: str = "executed"
    """Elements of each denoising step the ratio averages: ``executed`` (the T_a actions run in the environment,
    the authors' ``reward_horizon``) or ``chain`` (all T_p predicted actions: the exact likelihood of the whole
    transition, so the trust region also covers the unexecuted part, which the U-Net reads at the next step)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sampling, dict):
            self.sampling = StochasticSampling(**self.sampling)
        if self.ratio_over not in ("executed", "chain"):
            raise RobostackError(f"ratio_over must be 'executed' or 'chain', got {self.ratio_over!r}")


class DPPOLearner(ChunkLearner):
    def __init__(self, cfg: DPPOConfig, policy: Any) -> None:
        if policy.family != "diffusion":
            raise RobostackError(f"DPPO fine-tunes diffusion policies, not a {policy.family} policy")
        steps = policy.num_steps
        if not 1 <= cfg.ft_denoising_steps <= steps:
            raise RobostackError(f"ft_denoising_steps must be in [1, {steps}] (the policy's denoising steps)")
        super().__init__(cfg, policy, policy.unet.parameters())
        self.steps = steps
        self.frozen = copy.deepcopy(policy).requires_grad_(False).eval()
        self.clip = clip_schedule(cfg.ft_denoising_steps, cfg.clip_base, cfg.clip, cfg.clip_rate)
        self.discount = denoising_discount(cfg.ft_denoising_steps, cfg.gamma_denoise)
        t_o, t_a = policy.config.n_obs_steps, policy.config.n_action_steps
        self.executed = slice(t_o - 1, t_o - 1 + t_a)
        self.scored = self.executed if cfg.ratio_over == "executed" else slice(None)

    def old_logp(self, logp: torch.Tensor) -> torch.Tensor:
        """(B, K', T_p, Da) elementwise -> (B, K'): clamped, averaged over the scored elements (``ratio_over``)."""
        return logp[:, :, self.scored].clamp(LOGP_MIN, LOGP_MAX).mean(dim=(2, 3))

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], gen: torch.Generator
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(executed raw actions (N, T_a, Da), chain, per-step log-likelihoods (N, K', ...))."""
        cfg = self.cfg
        cond = self.policy.condition(obs)
        noise = torch.randn((cond.shape[0], *self.policy.noise_shape), generator=gen)
        chain, logp = sample_chain(self.policy, cond, noise, self.steps, cfg.sampling, gen, self.frozen,
                                   cfg.ft_denoising_steps)  # fmt: skip
        actions = self.policy.normalizer.unnormalize("action", chain[:, -1])[:, self.executed]
        actions = self.policy.clip_actions(actions)
        return actions.numpy(), chain, logp[:, self.steps - cfg.ft_denoising_steps :]

    def policy_loss(self, obs: dict, chain: torch.Tensor, old: torch.Tensor, adv: torch.Tensor) -> tuple:
        """One ratio per fine-tuned denoising step, each with its own clip; step k's advantage discounted."""
        cfg = self.cfg
        cond = self.policy.condition(obs)
        new = self.old_logp(
            score_chain(self.policy, cond, chain, self.steps, cfg.sampling, cfg.ft_denoising_steps)
        )
        return clipped_policy_loss(new, old, adv[:, None] * self.discount, self.clip)


@register_algorithm(
    "dppo", "finetune", DPPOConfig, "DPPO: PPO over the denoising chain of a diffusion policy"
)
def finetune(
    cfg: DPPOConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    def make(policy: Any) -> DPPOLearner:
        return DPPOLearner(cfg, policy)

    return on_policy_finetune(cfg, Path(out), make, DPPO_SEEDS, resume, progress)
