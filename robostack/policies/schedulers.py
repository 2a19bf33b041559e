"""Noise schedules and samplers: DDPM training (squared-cosine betas, epsilon prediction), DDIM inference, and
flow-matching integration. Pure tensor functions, so the ONNX export can unroll exactly the same arithmetic.

Conventions follow Diffusion Policy's diffusers setup: ``squaredcos_cap_v2`` betas over 100 train steps,
``clip_sample`` of the x0 estimate to [-1, 1], DDIM with ``set_alpha_to_one`` and "leading" timestep spacing.
Flow matching uses x_t = (1 - t) x0 + t eps with velocity u = eps - x0, integrated from t = 1 (noise) to 0.
"""

from __future__ import annotations

import math

import torch


def squaredcos_cap_v2(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the cosine schedule (Nichol & Dhariwal), float64 for exact cumulative products."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


class DDPMSchedule:
    """The forward (noising) process the model is trained on."""

    def __init__(self, num_train_steps: int = 100) -> None:
        self.num_train_steps = num_train_steps
        self.betas = squaredcos_cap_v2(num_train_steps)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x0.device)[k].to(x0.dtype)
        while ab.dim() < x0.dim():
            ab = ab.unsqueeze(-1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def ddim_timesteps(num_train_steps: int, num_inference_steps: int) -> list[int]:
    """Diffusers' "leading" spacing: 100 train steps, 10 inference steps -> [90, 80, ..., 0]."""
    if not 1 <= num_inference_steps <= num_train_steps:
        raise ValueError(f"num_inference_steps must be in [1, {num_train_steps}], got {num_inference_steps}")
    ratio = num_train_steps // num_inference_steps
    return [i * ratio for i in range(num_inference_steps)][::-1]


def ddim_coefficients(schedule: DDPMSchedule, num_inference_steps: int) -> list[tuple[int, float, float]]:
    """(timestep, alpha_bar_t, alpha_bar_prev) per DDIM step; alpha_bar_prev is 1 after the last step."""
    ts = ddim_timesteps(schedule.num_train_steps, num_inference_steps)
    ratio = schedule.num_train_steps // num_inference_steps
    ac = schedule.alphas_cumprod
    out = []
    for t in ts:
        prev = t - ratio
        out.append((t, float(ac[t]), float(ac[prev]) if prev >= 0 else 1.0))
    return out


def ddim_step(
    x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_prev: float, clip_sample: bool = True
) -> torch.Tensor:
    """One deterministic (eta = 0) DDIM update from an epsilon prediction."""
    x0 = (x_t - math.sqrt(1 - alpha_bar_t) * eps) / math.sqrt(alpha_bar_t)
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    return math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev) * eps


def flow_interpolate(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pair for flow matching: the point x_t on the straight path and its target velocity."""
    tt = t
    while tt.dim() < x0.dim():
        tt = tt.unsqueeze(-1)
    return (1 - tt) * x0 + tt * noise, noise - x0


def flow_times(num_steps: int) -> list[tuple[float, float]]:
    """(t, dt) pairs integrating from t = 1 down to 0 in equal steps."""
    dt = 1.0 / num_steps
    return [(1.0 - i * dt, dt) for i in range(num_steps)]
