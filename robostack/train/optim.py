"""Optimisation pieces every loop shares: the warm-up + cosine learning-rate schedule, one optimiser step, and the
EMA of a model's weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at step ``total`` (Diffusion Policy's schedule)."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup, total))


def optimizer_step(
    loss: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_params: Iterable[nn.Parameter] | None = None,
    grad_clip: float = 0.0,
) -> None:
    """Backward, optional global-norm clip, step, scheduler step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0 and clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
    opt.step()
    if sched is not None:
        sched.step()


class EMAUpdater:
    """``ema <- lerp(ema, model, 1 - decay)`` after every optimiser step, decay warming up as ``1 - (1 + step)^-power``.

    The tensor lists are gathered once (walking two module trees per step cost more than the update itself); they
    stay valid because resuming, DDP and torch.compile all keep the same parameter objects."""

    def __init__(self, ema: nn.Module, model: nn.Module, power: float, max_decay: float) -> None:
        self.power = power
        self.max_decay = max_decay
        self._dst, self._src = list(ema.parameters()), list(model.parameters())
        self._dst_buffers, self._src_buffers = list(ema.buffers()), list(model.buffers())

    def decay(self, step: int) -> float:
        return 0.0 if step == 0 else min(self.max_decay, 1.0 - (1.0 + step) ** -self.power)

    @torch.no_grad()
    def update(self, step: int) -> None:
        # one fused call over all tensors: a per-parameter loop costs several times more
        torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay(step))
        if self._dst_buffers:
            torch._foreach_copy_(self._dst_buffers, self._src_buffers)
