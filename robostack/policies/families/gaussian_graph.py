"""The exported graph of a Gaussian MLP policy: the mean action chunk, with everything constant folded away.

A robot executes the policy's mean (sampling around it is for exploration during RL, which runs in PyTorch), so the
graph has no noise input and no log-std head. At batch 1 an MLP this small costs about as much per graph node as per
multiply-add, so the exporter removes nodes rather than relying on onnxruntime to: onnxruntime keeps nodes whose
outputs nothing reads (the log-std branch costs the same whether or not its output is requested).

- Low-dim normalisation ``x * scale + offset`` is folded into the first Linear (``W diag(scale)``,
  ``b + W offset``); camera policies keep their encoder, which normalises images itself.
- The mean head keeps only the rows of the executed actions (``n_action_steps`` of ``horizon``).
- ``clamp(-1, 1)`` after ``tanh`` is the identity and is dropped; unnormalise and clip to the action bounds remain
  (the clip too is left out where the data's action range lies inside the bounds, so it cannot change a value).
- Mish is written as ``x * n / (n + 2)`` with ``n = e^x (e^x + 2)`` (the same function: tanh(softplus(x)) =
  n / (n + 2)). onnxruntime's Softplus is a scalar loop; its Exp, Mul, Add and Div are vectorised, and the six
  cheap nodes cost less than the three.
"""

from __future__ import annotations

import torch
from torch import nn

from robostack.policies.activations import Mish, exp_mish
from robostack.policies.base import Policy


class GaussianMeanGraph(nn.Module):
    """(obs_1, ..., obs_n) -> executed mean action chunk (B, n_action_steps, Da); same numbers as
    ``GaussianPolicy.predict_chunk(obs)`` up to float rounding."""

    def __init__(self, policy: Policy, keys: list[str]) -> None:  # a GaussianPolicy
        super().__init__()
        cfg, spec = policy.config, policy.spec
        self.keys = list(keys)
        self.n_obs_steps = cfg.n_obs_steps
        self.encoder = policy.encoder
        self.fold = not spec.image_keys
        self.lowdim = [(k, int(torch.Size(spec.obs[k].shape).numel())) for k in policy.encoder.lowdim_keys]
        first: nn.Linear = policy.trunk[0]
        self.first = first  # camera policies: encoder -> first Linear as trained
        if self.fold:
            weight, bias = first.weight.detach(), first.bias.detach()
            # One weight block per key: each key's (B, T_o, D_k) input is flattened and multiplied by its own
            # columns, so the graph needs no Concat (the encoder's layout is [t0: key1, key2, ..., t1: ...]).
            norm = policy.normalizer
            widths = [d for _, d in self.lowdim]
            per_step = sum(widths)
            blocks = []
            for i, (k, d) in enumerate(self.lowdim):
                start = sum(widths[:i])
                cols = torch.tensor(
                    [t * per_step + start + j for t in range(cfg.n_obs_steps) for j in range(d)]
                )
                scale = norm.stat(k, "scale").reshape(-1).repeat(cfg.n_obs_steps)
                offset = norm.stat(k, "offset").reshape(-1).repeat(cfg.n_obs_steps)
                w = weight[:, cols]
                bias = bias + w @ offset
                blocks.append((w * scale).t().contiguous())
            self.blocks = nn.ParameterList([nn.Parameter(b, requires_grad=False) for b in blocks])
            self.register_buffer("first_bias", bias)
        self.rest = nn.Sequential(
            *[
                ExpMish(safe_mish_input(policy.trunk, i)) if isinstance(m, nn.Mish | Mish) else m
                for i, m in enumerate(policy.trunk)
                if i > 0
            ]
        )
        da = spec.action.shape[0]
        self.n, self.da = cfg.n_action_steps, da
        rows = cfg.n_action_steps * da  # the chunk is (horizon, Da) row-major: executed actions come first
        self.head = nn.Linear(policy.mean.in_features, rows)
        self.head.weight.data.copy_(policy.mean.weight.detach()[:rows])
        self.head.bias.data.copy_(policy.mean.bias.detach()[:rows])
        lo, hi = policy.normalizer.stat("action", "min"), policy.normalizer.stat("action", "max")
        half = torch.where(hi - lo > 1e-6, 0.5 * (hi - lo), torch.zeros_like(lo))
        # tanh keeps the unnormalised action inside the data's [min, max]; where that lies inside the action
        # bounds, clipping cannot change a value and the graph leaves it out.
        self.clip = not bool(((lo >= policy.action_low) & (hi <= policy.action_high)).all())
        self.register_buffer("act_half", half.reshape(-1).repeat(cfg.n_action_steps))
        self.register_buffer("act_center", (lo + half).reshape(-1).repeat(cfg.n_action_steps))
        self.register_buffer("act_low", policy.action_low.reshape(-1).repeat(cfg.n_action_steps))
        self.register_buffer("act_high", policy.action_high.reshape(-1).repeat(cfg.n_action_steps))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs = dict(zip(self.keys, inputs, strict=True))
        if self.fold:
            h = self.first_bias
            for (k, _), w in zip(self.lowdim, self.blocks, strict=True):
                h = torch.addmm(h, obs[k].flatten(1), w)  # one Gemm per key, the bias carried in C
        else:
            h = self.first(self.encoder(obs))
        actions = torch.tanh(self.head(self.rest(h))) * self.act_half + self.act_center
        if self.clip:
            actions = torch.maximum(torch.minimum(actions, self.act_high), self.act_low)
        return actions.reshape(-1, self.n, self.da)


# e^x (e^x + 2) overflows float32 beyond x ~ 44; tanh(softplus(x)) is 1.0 in float32 from x ~ 9 on.
EXP_MISH_LIMIT = 40.0


def safe_mish_input(trunk: nn.Sequential, index: int) -> bool:
    """True when the Mish at ``trunk[index]`` provably sees inputs below EXP_MISH_LIMIT: it follows a LayerNorm
    over D features, whose normalised outputs satisfy |z| <= sqrt(D - 1), so |gamma z + beta| is bounded."""
    ln = trunk[index - 1]
    if not isinstance(ln, nn.LayerNorm) or ln.weight is None or ln.bias is None:
        return False
    d = ln.normalized_shape[-1]
    bound = (ln.weight.detach().abs() * (d - 1) ** 0.5 + ln.bias.detach().abs()).max()
    return bool(bound < EXP_MISH_LIMIT)


class ExpMish(nn.Module):
    """Mish through vectorised onnxruntime kernels: x * n / (n + 2), n = e^x (e^x + 2); without the clamp of the
    exponential's input where the preceding LayerNorm bounds it (one node less)."""

    def __init__(self, bounded: bool) -> None:
        super().__init__()
        self.bounded = bounded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return exp_mish(x, clamp=not self.bounded)
