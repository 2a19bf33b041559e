"""Conditional 1D temporal U-Net with FiLM conditioning (Diffusion Policy's ConditionalUnet1D architecture).

The noisy action sequence (B, T, Da) is convolved along time; the denoising-step embedding and the global
observation features modulate every residual block (scale and bias). Down dims 256/512/1024 with kernel 5 is the
paper's low-dim configuration (65.8 M parameters at Da = 7).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from robostack.policies.activations import Mish
from robostack.policies.stacked_unet import stacked_unet


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            torch.arange(half, device=x.device, dtype=torch.float32) * -(math.log(10000.0) / (half - 1))
        )
        emb = x.float()[:, None] * freqs[None, :]
        return torch.cat([emb.sin(), emb.cos()], dim=-1)


#: From this batch size on, PyTorch's own convolution runs: oneDNN's batched kernels win there (training batches),
#: the GEMM below wins under it (a robot's batch of 1).
NATIVE_CONV_MIN_BATCH = 32


class MatmulConv1d(nn.Conv1d):
    """A stride-1 'same' Conv1d computed as unfold + one GEMM at small batch sizes.

    At sequence length 16 and batch 1 PyTorch's CPU convolution falls back to a slow im2col kernel; one large matrix
    multiply is up to 2x faster there. At a training batch the CPU's oneDNN convolution is faster, forward and
    backward, so batches of ``NATIVE_CONV_MIN_BATCH`` or more take it, written as a height-1 Conv2d so that
    torch.compile's channels-last layout applies. Same parameters as nn.Conv1d, so checkpoints match.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not reached under ONNX export: ConditionalUnet1D exports its stacked_unet form, convolutions included.
        if x.shape[0] >= NATIVE_CONV_MIN_BATCH:
            # Eager PyTorch runs Conv1d as this height-1 Conv2d anyway; torch.compile only moves 4-D convolutions
            # to the channels-last layout oneDNN is fastest in on CPU.
            w = self.weight.unsqueeze(2)
            return F.conv2d(x.unsqueeze(2), w, self.bias, padding=(0, self.padding[0])).squeeze(2)
        k = self.kernel_size[0]
        if k == 1:
            return F.linear(x.transpose(1, 2), self.weight[:, :, 0], self.bias).transpose(1, 2)
        p = self.padding[0]
        cols = F.pad(x, (p, p)).unfold(2, k, 1)  # (B, C, T, K)
        b, c, t, _ = cols.shape
        cols = cols.permute(0, 2, 1, 3).reshape(b, t, c * k)
        return F.linear(cols, self.weight.reshape(self.out_channels, c * k), self.bias).transpose(1, 2)


def store_conv_weights_channels_last(module: nn.Module) -> int:
    """Re-stride every ``MatmulConv1d`` weight with kernel > 1 as (out, kernel, in) in memory, keeping its shape and
    values; returns how many were changed.

    For compiled CPU training: oneDNN runs the height-1 convolutions channels-last, and ATen hands back their
    weight gradients in that layout, which AccumulateGrad then transposed into a contiguous parameter every step
    (slow strided copies of the 128-channel weights). With the parameter stored channels-last the gradient is
    adopted as is. Checkpoints are unchanged (saved contiguous); inference loads them contiguous, which the
    batch-1 GEMM path wants."""
    n = 0
    for m in module.modules():
        if isinstance(m, MatmulConv1d) and m.kernel_size[0] > 1:
            with torch.no_grad():
                m.weight.data = m.weight.data.permute(0, 2, 1).contiguous().permute(0, 2, 1)
            n += 1
    return n


class Conv1dBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            MatmulConv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), Mish()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ConditionalResidualBlock1D(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int, film_scale: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [Conv1dBlock(c_in, c_out, kernel, groups), Conv1dBlock(c_out, c_out, kernel, groups)]
        )
        self.c_out = c_out
        self.film_scale = film_scale
        self.cond_encoder = nn.Sequential(Mish(), nn.Linear(cond_dim, c_out * (2 if film_scale else 1)))
        self.residual = MatmulConv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)
        film = self.cond_encoder(cond).unsqueeze(-1)
        if self.film_scale:
            scale, bias = film[:, : self.c_out], film[:, self.c_out :]
            out = scale * out + bias
        else:
            out = out + film
        return self.blocks[1](out) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        step_embed_dim: int = 256,
        down_dims: tuple[int, ...] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
        film_scale: bool = True,
    ) -> None:
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, step_embed_dim * 4),
            Mish(),
            nn.Linear(step_embed_dim * 4, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        dims = [action_dim, *down_dims]
        pairs = list(itertools.pairwise(dims))

        def block(i: int, o: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(i, o, cond_dim, kernel_size, n_groups, film_scale)

        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        block(c_in, c_out),
                        block(c_out, c_out),
                        nn.Conv1d(c_out, c_out, 3, 2, 1) if not last else nn.Identity(),
                    ]
                )
            )
        mid = down_dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        # Every up level upsamples: the finest skip (level 0) is never concatenated, as in Diffusion Policy.
        for c_in, c_out in reversed(pairs[1:]):
            self.up.append(
                nn.ModuleList(
                    [block(c_out * 2, c_in), block(c_in, c_in), nn.ConvTranspose1d(c_in, c_in, 4, 2, 1)]
                )
            )
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor
    ) -> torch.Tensor:
        """sample (B, T, Da), timestep (B,) float, global_cond (B, C) -> (B, T, Da)."""
        if torch.onnx.is_in_onnx_export():
            # The exported graph is the time-major, static-shape form (stacked_unet's docstring says why): at a
            # robot's batch of 1 it has about half the nodes of this forward's, and nodes set the latency there.
            return stacked_unet([self], sample[None], timestep[None], global_cond[None])[0]
        x = sample.transpose(1, 2)
        cond = torch.cat([self.step_encoder(timestep), global_cond], dim=-1)
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for m in self.mid:
            x = m(x, cond)
        for res1, res2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(res2(res1(x, cond), cond))
        return self.final(x).transpose(1, 2)
