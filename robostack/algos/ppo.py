"""PPO's pieces as pure functions on tensors, shared by DPPO (over the denoising chain) and the Gaussian-PPO baseline.

GAE runs over environment steps only (DPPO §4.2: V sees the environment state alone); DPPO then gives denoising
step k of a decision the advantage gamma_denoise^k * A_t, the noisiest step discounted most, and clips each
denoising step's ratio with its own epsilon, rising exponentially from the noisiest fine-tuned step to the last
(irom-lab/dppo ``diffusion_ppo.py``).
"""

from __future__ import annotations

import math

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
    bootstrap_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (T, N) rollouts of N environment copies.

    ``values[t]`` = V(s_t); ``last_values`` = V(s_T) after the rollout. Where step t ended its episode, nothing
    from the next episode flows back: a terminated step bootstraps 0, a truncated one its own final state's value
    (``bootstrap_values[t]``, V of the observation the time limit cut at; 0 when not given). Returns
    (advantages, returns = advantages + values), both (T, N)."""
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    boot = bootstrap_values if bootstrap_values is not None else torch.zeros_like(values)
    for t in reversed(range(steps)):
        ended = terminated[t] | truncated[t]
        next_v = last_values if t == steps - 1 else values[t + 1]
        next_v = torch.where(ended, torch.where(truncated[t] & ~terminated[t], boot[t], 0.0), next_v)
        delta = rewards[t] + gamma * next_v - values[t]
        running = delta + gamma * lam * (~ended).float() * running
        adv[t] = running
    return adv, adv + values


def clip_schedule(fine_tuned_steps: int, base: float, final: float, rate: float = 3.0) -> torch.Tensor:
    """Per-denoising-step clip epsilons (K',): ``base`` at the noisiest fine-tuned step rising exponentially (with
    ``rate``) to ``final`` at the last, as irom-lab/dppo's ``clip_ploss_coef_base`` -> ``clip_ploss_coef``."""
    if fine_tuned_steps == 1:
        return torch.tensor([final])
    t = torch.arange(fine_tuned_steps, dtype=torch.float64) / (fine_tuned_steps - 1)
    return (base + (final - base) * (torch.exp(rate * t) - 1) / (math.exp(rate) - 1)).float()


def denoising_discount(fine_tuned_steps: int, gamma_denoise: float) -> torch.Tensor:
    """(K',) factors gamma_denoise^k for the fine-tuned steps in chain order: the noisiest (first) gets the
    highest power, the last step gamma^0 = 1."""
    return gamma_denoise ** torch.arange(fine_tuned_steps - 1, -1, -1, dtype=torch.float32)


def clipped_policy_loss(
    logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: torch.Tensor | float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-E[min(r A, clip(r, 1 - eps, 1 + eps) A)], r = exp(logp_new - logp_old); every argument broadcasts to the same
    shape (DPPO: (B, K') with eps per denoising step). Metrics: clip fraction and approximate KL (k3 estimator)."""
    log_ratio = logp_new - logp_old
    ratio = log_ratio.exp()
    clip = torch.as_tensor(clip, dtype=ratio.dtype, device=ratio.device)
    unclipped = ratio * advantages
    clipped = torch.maximum(torch.minimum(ratio, 1 + clip), 1 - clip) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        clip_fraction = ((ratio - 1).abs() > clip).float().mean()
        approx_kl = ((ratio - 1) - log_ratio).mean()
    return loss, {"policy_loss": loss.detach(), "clip_fraction": clip_fraction, "approx_kl": approx_kl}


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * MSE (DPPO's critic loss)."""
    loss = 0.5 * ((values - returns.detach()) ** 2).mean()
    return loss, {"value_loss": loss.detach()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]; 1 is a perfect critic, 0 no better than a constant."""
    var = float(returns.var())
    return float("nan") if var == 0 else 1.0 - float((returns - values).var()) / var
