"""PPO's pieces on hand-computed tensors: GAE across episode ends, the DPPO clip schedule and denoising discount,
the clipped objective with its clip fraction and approximate KL."""

from __future__ import annotations

import math

import pytest
import torch

from robostack.algos.ppo import (
    clip_schedule,
    clipped_policy_loss,
    denoising_discount,
    explained_variance,
    gae,
    value_loss,
)


def test_gae_stops_at_episode_ends_and_bootstraps_truncation():
    # one copy, 3 steps: r = [0, 1, 0], V = [0.5, 0.5, 0.5], the second step terminates, V(s_T) = 2
    r = torch.tensor([[0.0], [1.0], [0.0]])
    v = torch.full((3, 1), 0.5)
    term = torch.tensor([[False], [True], [False]])
    trunc = torch.zeros(3, 1, dtype=torch.bool)
    adv, ret = gae(r, v, term, trunc, torch.tensor([2.0]), gamma=0.9, lam=0.8)
    d2 = 0.0 + 0.9 * 2.0 - 0.5  # the last step bootstraps V(s_T)
    d1 = 1.0 - 0.5  # terminated: no bootstrap, nothing flows back from step 2
    d0 = 0.0 + 0.9 * 0.5 - 0.5
    torch.testing.assert_close(adv[:, 0], torch.tensor([d0 + 0.9 * 0.8 * d1, d1, d2]))
    torch.testing.assert_close(ret, adv + v)
    # truncated instead: bootstrap the value of the state the time limit cut at, still nothing from step 2
    adv, _ = gae(r, v, torch.zeros(3, 1, dtype=torch.bool), term, torch.tensor([2.0]), 0.9, 0.8,
                 bootstrap_values=torch.tensor([[0.0], [3.0], [0.0]]))  # fmt: skip
    assert float(adv[1, 0]) == pytest.approx(1.0 + 0.9 * 3.0 - 0.5)


def test_dppo_clip_schedule_and_denoising_discount():
    eps = clip_schedule(5, base=0.001, final=0.01, rate=3.0)
    assert float(eps[0]) == pytest.approx(0.001) and float(eps[-1]) == pytest.approx(0.01)
    t = 0.5
    assert float(eps[2]) == pytest.approx(0.001 + 0.009 * (math.exp(3 * t) - 1) / (math.exp(3) - 1), rel=1e-6)
    assert torch.all(eps[1:] > eps[:-1])
    assert clip_schedule(1, 0.001, 0.01).tolist() == pytest.approx([0.01])
    torch.testing.assert_close(denoising_discount(3, 0.9), torch.tensor([0.81, 0.9, 1.0]))


def test_clipped_objective_and_diagnostics():
    logp_old = torch.zeros(4)
    logp_new = torch.log(torch.tensor([1.5, 0.5, 1.05, 1.0]))
    adv = torch.tensor([1.0, 1.0, -1.0, 2.0])
    loss, m = clipped_policy_loss(logp_new, logp_old, adv, 0.2)
    # min(r A, clip(r) A): 1.2 (clipped), 0.5 (unclipped is smaller), -1.05, 2.0
    assert float(loss) == pytest.approx(-(1.2 + 0.5 - 1.05 + 2.0) / 4)
    assert float(m["clip_fraction"]) == pytest.approx(0.5)
    r = torch.tensor([1.5, 0.5, 1.05, 1.0])
    assert float(m["approx_kl"]) == pytest.approx(float(((r - 1) - r.log()).mean()))
    vloss, _ = value_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]))
    assert float(vloss) == pytest.approx(0.25)
    assert explained_variance(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(
        1.0
    )
