"""AdamW whose parameters share one step counter: torch's fused kernel, without the per-parameter bookkeeping.

torch's fused AdamW keeps a step tensor per parameter and increments all of them every step with
``_foreach_add_``, which on CPU is a loop of 148 scalar adds (plus a dtype conversion each) for the push U-Net;
together with the Python walk over the parameters that is about half of the optimiser's time. Every parameter of a policy gets a gradient every step,
so their counters never differ: one shared tensor per group holds the step and the kernel reads it for all. The
update is bitwise the one torch computes, and the state dict has torch's layout (a step per parameter), so
checkpoints load in either optimiser.

Parameters stored in a permuted layout (the channels-last convolution weights of a compiled CPU run) reach the
kernel as 1-D views of their memory: the CPU kernel walks every tensor as one flat array anyway, but first makes a
contiguous copy of each such gradient that it never reads (a copy per convolution weight per step; within the noise
of a step-time A/B, but pointless). The flat views hold the same elements in the same order, so the update is
unchanged bit for bit. For the same reason a gradient or a loaded optimiser state whose strides differ
from its parameter's is first copied into the parameter's layout: torch's CPU kernel pairs such tensors' elements
by memory position, a silently wrong update (torch 2.14.1: a contiguous gradient on a channels-last parameter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class SharedStepAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW(fused=True)`` with one step counter per parameter group.

    Falls back to torch's own step (and per-parameter counters, from then on) for what the shared counter cannot
    express: a parameter without a gradient in some step, amsgrad, maximize, a closure, or loaded counters that
    differ."""

    def __init__(self, params: Iterable[Any], **kwargs: Any) -> None:
        super().__init__(params, fused=True, **kwargs)
        self._shared: dict[int, torch.Tensor] = {}
        self._fallback = False

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        # torch's layout: a counter per parameter, never one object shared by all. New dicts: torch's state_dict
        # hands out the live per-parameter state dicts, and replacing their counter there would detach it from
        # the shared one, freezing every later checkpoint's step at this call's value.
        out["state"] = {
            k: {**s, "step": s["step"].clone()} if "step" in s else dict(s) for k, s in out["state"].items()
        }
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._shared.clear()  # the loaded counters are copies per parameter: share them again at the next step
        self._fallback = False

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        if not self._fallback and closure is None:
            groups = [g for g in self.param_groups if g["params"]]
            plans = [self._plan(group) for group in groups]
            if all(plan is not None for plan in plans):
                for group, plan in zip(groups, plans, strict=True):
                    self._fused_step(group, *plan)
                return None
            self._fallback = True
            self._unshare()
        return super().step(closure)

    def _plan(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        """The group's gradients (a new list, which ``_fused_step`` may edit) and its shared step counter, or None
        where the counter cannot be shared."""
        params = group["params"]
        grads = [p.grad for p in params]
        if any(g is None for g in grads) or group["amsgrad"] or group["maximize"] or group["differentiable"]:
            return None
        step = self._shared.get(id(group))
        if step is None:
            step = self._share(params)
            if step is None:
                return None
            self._shared[id(group)] = step
        return grads, step  # type: ignore[return-value]

    def _share(self, params: list[torch.Tensor]) -> torch.Tensor | None:
        """One counter for all of ``params``: a new one for fresh state, or the loaded ones merged when equal."""
        if any(p.device != params[0].device or p.dtype != params[0].dtype for p in params):
            return None  # one fused call covers one device and dtype
        states = [self.state[p] for p in params]
        if not any(states):
            step = torch.zeros((), dtype=torch.float32, device=params[0].device)
            for p in params:
                self.state[p].update(
                    step=step,
                    exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                    exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
                )
            return step
        if not all(s and "step" in s for s in states):
            return None
        step = states[0]["step"]
        if any(not torch.equal(s["step"], step) for s in states) or step.device != params[0].device:
            return None
        for p, s in zip(params, states, strict=True):
            s["step"] = step
            for key in ("exp_avg", "exp_avg_sq"):
                if not same_layout(s[key], p):  # state saved from a run whose parameters had another layout
                    s[key] = like(p, s[key])
        return step

    def _unshare(self) -> None:
        for s in self.state.values():
            if "step" in s:
                s["step"] = s["step"].clone()
        self._shared.clear()

    def _fused_step(self, group: dict[str, Any], grads: list[torch.Tensor], step: torch.Tensor) -> None:
        params = list(group["params"])
        state = [self.state[p] for p in params]
        exp_avgs = [s["exp_avg"] for s in state]
        exp_avg_sqs = [s["exp_avg_sq"] for s in state]
        for i, p in enumerate(params):
            if p.is_contiguous() and grads[i].is_contiguous():
                continue
            if not same_layout(grads[i], p):
                # torch's kernel would pair the elements of differently strided tensors by memory position
                grads[i] = like(p, grads[i])
            if not p.is_contiguous():
                flat = memory_order_views(p, grads[i], exp_avgs[i], exp_avg_sqs[i])
                if flat is not None:
                    params[i], grads[i], exp_avgs[i], exp_avg_sqs[i] = flat
        beta1, beta2 = group["betas"]
        step.add_(1)
        torch._fused_adamw_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            [step] * len(params),
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same strides wherever a dimension has more than one element (the others never move)."""
    return a.shape == b.shape and all(
        n == 1 or sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride(), strict=True)
    )


def like(param: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values`` copied into a tensor with ``param``'s strides."""
    return torch.empty_like(param, memory_format=torch.preserve_format).copy_(values)


def memory_order_views(*tensors: torch.Tensor) -> list[torch.Tensor] | None:
    """Each tensor as a 1-D view of its elements in memory order, or None unless all share one dense layout.

    Same strides are required of all: an elementwise kernel over the flat views then pairs the same elements as it
    would over the tensors themselves."""
    first = tensors[0]
    if any(not same_layout(t, first) for t in tensors[1:]):
        return None
    order = sorted(range(first.dim()), key=first.stride, reverse=True)
    permuted = [t.permute(order) for t in tensors]
    if not permuted[0].is_contiguous():
        return None  # overlapping or with gaps: no flat view holds exactly its elements
    return [t.view(-1) for t in permuted]
