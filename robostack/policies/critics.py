"""Value networks the RL methods train beside a policy: an ensemble of E MLPs computed as one batched network.

Every layer holds all E members' weights in one (E, in, out) tensor and runs as one batched matrix multiply, so
ten critics cost a few large kernels instead of ten passes of small ones (RLPD's 10-critic ensemble, REDQ's
random-subset minimum). LayerNorm after each hidden layer (RLPD: it keeps Q values from extrapolating wildly on
actions the data never took) normalises each member on its own, with its own gain and bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleLinear(nn.Module):
    """E independent ``nn.Linear(in_dim, out_dim)`` layers: (E, B, in) -> (E, B, out)."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``members``: indices of the members to run (all by default); ``x`` then holds that many."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the features of each member, with per-member gain and bias."""

    def __init__(self, members: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        w, b = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        # one fused kernel for the per-member affine: ~30% less time than multiply-then-add, forward and backward
        return torch.addcmul(b, F.layer_norm(x, x.shape[-1:], eps=self.eps), w)


class EnsembleMLP(nn.Module):
    """E MLPs in one: (B, in) -> (E, B, out), hidden layers Linear -> [LayerNorm] -> ReLU."""

    def __init__(
        self, members: int, in_dim: int, out_dim: int, hidden: list[int], layer_norm: bool = True
    ) -> None:
        super().__init__()
        self.members = members
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(EnsembleLinear(members, d, h))
            if layer_norm:
                layers.append(EnsembleLayerNorm(members, h))
            layers.append(nn.ReLU(inplace=True))  # the layer before needs no output for its gradient
            d = h
        layers.append(EnsembleLinear(members, d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``members``: run only these members, (len(members), B, out) -- REDQ's random-subset target computes the
        two members it takes the minimum of, not all E."""
        count = self.members if members is None else len(members)
        x = x.unsqueeze(0).expand(count, *x.shape)
        for layer in self.net:
            x = layer(x, members) if isinstance(layer, EnsembleLinear | EnsembleLayerNorm) else layer(x)
        return x


class QEnsemble(nn.Module):
    """Q(s, a) for E members: (features (B, F), actions (B, A)) -> (E, B)."""

    def __init__(
        self, feature_dim: int, action_dim: int, members: int = 10, hidden: list[int] | None = None,
        layer_norm: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.members = members
        self.mlp = EnsembleMLP(members, feature_dim + action_dim, 1, hidden or [256, 256], layer_norm)

    def forward(
        self, features: torch.Tensor, actions: torch.Tensor, members: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(E, B), or (len(members), B) for the given members only."""
        return self.mlp(torch.cat([features, actions], dim=-1), members).squeeze(-1)


class VEnsemble(nn.Module):
    """V(s) for E members: features (B, F) -> (E, B)."""

    def __init__(
        self, feature_dim: int, members: int = 1, hidden: list[int] | None = None, layer_norm: bool = True
    ) -> None:
        super().__init__()
        self.members = members
        self.mlp = EnsembleMLP(members, feature_dim, 1, hidden or [256, 256], layer_norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1)
