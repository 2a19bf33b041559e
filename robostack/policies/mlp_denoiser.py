"""A residual-MLP denoiser for short action chunks: DPPO's ``DiffusionMLP`` for state observations (Ren et al.,
ICLR 2025, App. B), the alternative to the 1-D U-Net when the chunk is a handful of actions.

The noisy chunk (B, T, Da) is flattened and concatenated with the denoising-step embedding and the global
observation features; residual blocks of two Mish layers map it to the chunk's prediction (B, T, Da). Same call as
``ConditionalUnet1D`` -- (sample, timestep, global_cond) -> prediction -- so the diffusion and flow families, their
samplers, DPPO, composition and ONNX export take either backbone. Why it exists: online RL (DPPO) scores every
fine-tuned denoising step of every decision each epoch, and on a CPU the U-Net's convolutions over a 16-step chunk
cost ~50x this network's matrix products over a 4-step one.
"""

from __future__ import annotations

import torch
from torch import nn

from robostack.policies.activations import Mish
from robostack.policies.unet1d import SinusoidalPosEmb


class ResidualBlock(nn.Module):
    """x + Linear(Mish(Linear(Mish(x)))): two layers per block, as DPPO's ``TwoLayerPreActivationResNetLinear``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(Mish(), nn.Linear(width, width), Mish(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class MLPDenoiser(nn.Module):
    def __init__(
        self,
        action_dim: int,
        horizon: int,
        global_cond_dim: int,
        step_embed_dim: int = 16,
        hidden: int = 512,
        blocks: int = 1,
    ) -> None:
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, step_embed_dim * 2),
            Mish(),
            nn.Linear(step_embed_dim * 2, step_embed_dim),
        )
        self.inp = nn.Linear(horizon * action_dim + step_embed_dim + global_cond_dim, hidden)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])
        self.out = nn.Sequential(Mish(), nn.Linear(hidden, horizon * action_dim))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor
    ) -> torch.Tensor:
        """sample (B, T, Da), timestep (B,) float, global_cond (B, C) -> (B, T, Da)."""
        b = sample.shape[0]
        h = torch.cat([sample.reshape(b, -1), self.step_encoder(timestep), global_cond], dim=-1)
        return self.out(self.blocks(self.inp(h))).reshape(b, self.horizon, self.action_dim)
