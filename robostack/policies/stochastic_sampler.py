"""The stochastic denoising sampler DPPO fine-tunes through (Ren et al., ICLR 2025, §4.1 and §4.4).

Every DDIM step with eta > 0 is a Gaussian: x_prev ~ N(mu, sigma^2) with

    x0_hat = clip((x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), -1, 1)
    sigma  = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)
    mu     = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps

so the log-likelihood of a whole denoising chain is exact and PPO applies to it. DPPO floors sigma: at least
``min_std_sample`` when drawing (exploration; the last step, sigma = 0, would otherwise be deterministic) and at
least ``min_std_score`` when scoring a stored chain (stable ratios); the drawn noise is clipped to +-``noise_clip``.
With eta = 0 and no floor the chain's end is exactly the deterministic DDIM sample the policy executes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StochasticSampling:
    eta: float = 1.0
    min_std_sample: float = 0.1
    """sigma floor when drawing a chain (DPPO's sigma_min^exp)."""
    min_std_score: float = 0.1
    """sigma floor when scoring a chain's log-likelihood (DPPO's sigma_min^prob)."""
    noise_clip: float = 3.0


def ddim_gaussian(
    x_t: torch.Tensor, eps: torch.Tensor, ab_t: float, ab_prev: float, eta: float, clip_sample: bool
) -> tuple[torch.Tensor, float]:
    """(mean, sigma) of the DDIM step x_t -> x_prev with stochasticity ``eta`` (sigma 0 for eta = 0)."""
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    var = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
    sigma = math.sqrt(max(var, 0.0))
    mean = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - var, 0.0)) * eps
    return mean, sigma


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2)."""
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def sample_chain(
    policy: torch.nn.Module,
    cond: torch.Tensor,
    noise: torch.Tensor,
    steps: int,
    how: StochasticSampling,
    generator: torch.Generator | None = None,
    frozen: torch.nn.Module | None = None,
    fine_tuned: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a denoising chain from ``noise`` (B, T_p, Da): returns the chain (B, steps + 1, T_p, Da), x_K first and
    the normalised action sequence last, and each step's elementwise log-likelihood (B, steps, T_p, Da). With
    ``frozen`` and ``fine_tuned`` = K', the frozen copy's network runs the first steps - K' steps (DPPO); both
    copies read the same conditioning."""
    x, chain, logps = noise, [noise], []
    first_trained = steps - (fine_tuned if fine_tuned is not None else steps)
    for i, (t, ab_t, ab_prev) in enumerate(policy.ddim_plan(steps)):
        net = frozen.unet if frozen is not None and i < first_trained else policy.unet
        eps = net(x, torch.full((x.shape[0],), float(t), device=x.device), cond)
        mean, sigma = ddim_gaussian(x, eps, ab_t, ab_prev, how.eta, policy.config.clip_sample)
        std = max(sigma, how.min_std_sample)
        if std > 0:
            z = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            x = mean + std * z.clamp(-how.noise_clip, how.noise_clip)
            logps.append(gaussian_log_prob(x, mean, max(sigma, how.min_std_score)))
        else:
            x = mean
            logps.append(torch.zeros_like(mean))
        chain.append(x)
    return torch.stack(chain, 1), torch.stack(logps, 1)


def score_chain(
    policy: torch.nn.Module,
    cond: torch.Tensor,
    chain: torch.Tensor,
    steps: int,
    how: StochasticSampling,
    only_last: int | None = None,
) -> torch.Tensor:
    """Elementwise log-likelihood (B, K', T_p, Da) of the stored ``chain``'s transitions under ``policy`` now, for
    its last ``only_last`` steps (K'; all by default) -- what PPO's ratio compares with the sampling-time one."""
    plan = policy.ddim_plan(steps)
    first = 0 if only_last is None else steps - only_last
    out = []
    for i in range(first, steps):
        t, ab_t, ab_prev = plan[i]
        x = chain[:, i]
        eps = policy.unet(x, torch.full((x.shape[0],), float(t), device=x.device), cond)
        mean, sigma = ddim_gaussian(x, eps, ab_t, ab_prev, how.eta, policy.config.clip_sample)
        out.append(gaussian_log_prob(chain[:, i + 1], mean, max(sigma, how.min_std_score)))
    return torch.stack(out, 1)
