"""The arithmetic of General Policy Composition (GPC): converting a parent's prediction to the composite's
parameterisation, and the convex mix over chunks of different lengths. Pure tensor functions, traced unchanged
into the exported graph.

Both denoising families put a noisy action sequence on a Gaussian path x = a * x0 + s * eps:

- diffusion (DDPM, variance preserving): a = sqrt(alpha_bar_k), s = sqrt(1 - alpha_bar_k), the network predicts eps;
- flow matching: a = 1 - t, s = t, the network predicts the velocity u = eps - x0.

A VP point is a flow point after scaling: x / (a + s) = (1 - t) x0 + t eps with t = s / (a + s). So a flow parent is
queried exactly at any diffusion step, and its velocity becomes eps = y + (1 - t) u (y the scaled point). The
converse needs a diffusion network at a continuous time it was never trained on, so a composite with a diffusion
parent always runs the diffusion parent's DDIM grid. Every parameterisation is affine in eps at a fixed point, so a
convex mix of eps (weights summing to 1) gives the same step as a mix of x0 or of velocities.
"""

from __future__ import annotations

import itertools

import torch


def vp_point_to_flow(x: torch.Tensor, a: float, s: float) -> tuple[torch.Tensor, float]:
    """The flow path's (point, time) that equals the VP path's point ``x`` with coefficients (a, s)."""
    return x / (a + s), s / (a + s)


def velocity_to_eps(y: torch.Tensor, u: torch.Tensor, t: float) -> torch.Tensor:
    """Noise implied by a flow velocity ``u`` at point ``y``, time ``t`` (y = (1-t) x0 + t eps, u = eps - x0)."""
    return y + (1.0 - t) * u


def eps_to_velocity(y: torch.Tensor, eps: torch.Tensor, t: float) -> torch.Tensor:
    """Inverse of ``velocity_to_eps`` (t < 1)."""
    return (eps - y) / (1.0 - t)


def segment_weights(horizons: list[int], weights: list[float]) -> list[tuple[int, int, list[float]]]:
    """(start, stop, per-parent weight) for each stretch of the chunk covered by the same parents.

    The common prefix mixes every parent with its weight; beyond a parent's horizon the parents still covering it
    share their weights renormalised (two parents: the longer parent's tail, as in GPC), and equally if their weights
    sum to zero (the tail must come from someone)."""
    cuts = sorted({0, *horizons})
    out = []
    for start, stop in itertools.pairwise(cuts):
        cover = [i for i, h in enumerate(horizons) if h >= stop]
        total = sum(weights[i] for i in cover)
        seg = [0.0] * len(horizons)
        for i in cover:
            seg[i] = weights[i] / total if total > 0 else 1.0 / len(cover)
        out.append((start, stop, seg))
    return out


def mix(preds: list[torch.Tensor], segments: list[tuple[int, int, list[float]]]) -> torch.Tensor:
    """Convex mix of per-parent predictions (B, H_i, Da) into one (B, max H, Da) prediction.

    A weight of exactly 1 with the others 0 returns that parent's prediction bit for bit (1*x + 0*y == x)."""
    parts = []
    for start, stop, seg in segments:
        acc = None
        for w, p in zip(seg, preds, strict=True):
            if p.shape[1] < stop:
                continue
            term = p[:, start:stop] * w
            acc = term if acc is None else acc + term
        parts.append(acc)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
