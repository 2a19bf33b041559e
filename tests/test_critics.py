"""The batched critic ensemble computes exactly what E separate MLPs compute."""

from __future__ import annotations

import torch
from torch import nn

from robostack.policies.critics import EnsembleLayerNorm, EnsembleLinear, QEnsemble, VEnsemble


def _member(mlp, i: int) -> nn.Sequential:
    """Member ``i`` of an EnsembleMLP as an ordinary nn.Sequential with copied weights."""
    layers = []
    for m in mlp.net:
        if isinstance(m, EnsembleLinear):
            lin = nn.Linear(m.weight.shape[1], m.weight.shape[2])
            lin.weight.data.copy_(m.weight[i].t())
            lin.bias.data.copy_(m.bias[i, 0])
            layers.append(lin)
        elif isinstance(m, EnsembleLayerNorm):
            ln = nn.LayerNorm(m.weight.shape[-1])
            ln.weight.data.copy_(m.weight[i, 0])
            ln.bias.data.copy_(m.bias[i, 0])
            layers.append(ln)
        else:
            layers.append(m)
    return nn.Sequential(*layers)


def test_ensemble_equals_separate_networks_forward_and_backward():
    torch.manual_seed(0)
    q = QEnsemble(feature_dim=6, action_dim=2, members=5, hidden=[32, 16])
    feats, acts = torch.randn(7, 6), torch.randn(7, 2)
    out = q(feats, acts)
    assert out.shape == (5, 7)
    x = torch.cat([feats, acts], -1)
    separate = [_member(q.mlp, i) for i in range(5)]
    for i, net in enumerate(separate):
        torch.testing.assert_close(out[i], net(x).squeeze(-1), rtol=1e-5, atol=1e-6)
    # gradients of member 2's loss reach only member 2's slice, and equal the separate network's
    out[2].sum().backward()
    separate[2](x).sum().backward()
    first = q.mlp.net[0]
    torch.testing.assert_close(first.weight.grad[2], separate[2][0].weight.grad.t(), rtol=1e-5, atol=1e-6)
    assert first.weight.grad[[0, 1, 3, 4]].abs().max() == 0


def test_value_ensemble_without_layer_norm():
    torch.manual_seed(1)
    v = VEnsemble(feature_dim=4, members=2, hidden=[8], layer_norm=False)
    x = torch.randn(3, 4)
    assert v(x).shape == (2, 3)
    torch.testing.assert_close(v(x)[1], _member(v.mlp, 1)(x).squeeze(-1))


def test_a_member_subset_computes_only_those_members_exactly():
    torch.manual_seed(2)
    q = QEnsemble(feature_dim=4, action_dim=2, members=6, hidden=[16, 8])
    feats, acts = torch.randn(5, 4), torch.randn(5, 2)
    subset = torch.tensor([4, 1])
    torch.testing.assert_close(q(feats, acts, subset), q(feats, acts)[subset], rtol=0, atol=0)
