"""SAC/RLPD: the losses on hand-computed tensors, the squashed Gaussian's log-probability, the learner's update
and an exact resume of every network, optimiser and the temperature."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from robostack.algos.sac import (
    SACConfig,
    SACLearner,
    actor_loss,
    critic_loss,
    td_target,
    temperature_loss,
)
from robostack.errors import RobostackError
from robostack.policies import build_policy
from robostack.train.state import checkpoint_folder, load_train_state, mark_last, save_train_state

from test_policies import SPEC, STATS


def test_losses_on_hand_computed_tensors():
    reward, term = torch.tensor([1.0, 0.0]), torch.tensor([False, True])
    next_q = torch.tensor([[2.0, 5.0], [3.0, 1.0]])  # (subset, B): min per column = [2, 1]
    torch.testing.assert_close(
        td_target(reward, term, next_q, torch.zeros(2), 0.5, 0.9, False), torch.tensor([2.8, 0.0])
    )
    logp = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(
        td_target(reward, term, next_q, logp, 0.5, 0.9, True), torch.tensor([2.35, 0.0])
    )
    loss, m = critic_loss(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1.0, 1.0]))
    assert float(loss) == pytest.approx(3.5) and float(m["q_mean"]) == pytest.approx(2.5)
    loss, _ = actor_loss(torch.tensor([[1.0, 3.0], [3.0, 5.0]]), torch.tensor([0.5, 1.0]), 2.0)
    assert float(loss) == pytest.approx(-1.5)
    loss, m = temperature_loss(torch.tensor(math.log(2.0)), torch.tensor([-1.0, -3.0]), -2.0)
    assert float(loss) == pytest.approx(8.0) and float(m["temperature"]) == pytest.approx(2.0)


def _actor(seed=0):
    torch.manual_seed(seed)
    return build_policy("gaussian", {"hidden_dims": [32, 32], "horizon": 1, "n_action_steps": 1}, SPEC, STATS)


def test_squashed_log_prob_is_the_change_of_variables():
    actor = _actor()
    obs = {"obs/state": torch.rand(5, 1, 3), "obs/object": torch.rand(5, 1, 2) * 2 - 1}
    torch.manual_seed(3)
    a, logp = actor.squashed_sample(obs)
    h = actor.trunk(actor.encoder(actor.frames(obs)))
    u = actor.mean(h).view(5, 1, 2)
    std = actor.log_std(h).clamp(-5, 2).exp().view(5, 1, 2)
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(u, std), [torch.distributions.TanhTransform()]
    )
    torch.testing.assert_close(
        logp, ref.log_prob(a.clamp(-1 + 1e-6, 1 - 1e-6)).flatten(1).sum(-1), rtol=1e-3, atol=1e-3
    )
    det, _ = actor.squashed_sample(obs, deterministic=True)
    mean, _ = actor.distribution(obs)
    torch.testing.assert_close(det, mean)  # what RL trains deterministically is what export executes


def _batch(rng, n=32):
    return {
        "obs/state": torch.as_tensor(rng.uniform(0, 1, (n, 3)), dtype=torch.float32),
        "obs/object": torch.as_tensor(rng.uniform(-1, 1, (n, 2)), dtype=torch.float32),
        "next/obs/state": torch.as_tensor(rng.uniform(0, 1, (n, 3)), dtype=torch.float32),
        "next/obs/object": torch.as_tensor(rng.uniform(-1, 1, (n, 2)), dtype=torch.float32),
        "action": torch.as_tensor(rng.uniform(-0.5, 0.5, (n, 2)), dtype=torch.float32),
        "reward": torch.as_tensor(-(rng.random(n) < 0.2).astype(np.float32)),
        "terminated": torch.as_tensor(rng.random(n) < 0.1),
    }


def test_learner_updates_and_resumes_exactly(tmp_path):
    cfg = SACConfig(critics=4, hidden=[32, 32], utd=2, batch_size=32)
    rng = np.random.default_rng(0)
    batches = [_batch(rng) for _ in range(6)]
    torch.manual_seed(0)
    learner = SACLearner(cfg, _actor())
    first = learner.update(batches[0:2])
    for i in range(2, 4):
        learner.update([batches[i], batches[i]])
    assert {"critic_loss", "actor_loss", "temperature", "entropy"} <= set(first)
    assert learner.temperature.alpha.item() != pytest.approx(1.0)  # the temperature is tuned
    np_rng = np.random.default_rng(5)
    folder = checkpoint_folder(tmp_path, 4)
    save_train_state(folder, 4, learner.state_objects(), np_rng)
    mark_last(tmp_path, folder)
    after = learner.update(batches[4:6])

    torch.manual_seed(123)  # a different stream: the checkpoint must restore the one saved
    resumed = SACLearner(cfg, _actor(seed=9))
    assert (
        load_train_state(tmp_path.parent / tmp_path.name, resumed.state_objects(), np.random.default_rng(0))
        == 4
    )
    again = resumed.update(batches[4:6])
    assert again == after
    for a, b in zip(learner.critic.parameters(), resumed.critic.parameters(), strict=True):
        assert torch.equal(a, b)


def test_compiled_updates_follow_the_eager_ones():
    cfg = SACConfig(critics=4, hidden=[32, 32], batch_size=32)
    rng = np.random.default_rng(1)
    batches = [_batch(rng) for _ in range(3)]
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        learner = SACLearner(replace(cfg, compile=compiled), _actor())
        runs.append([learner.update([b]) for b in batches])
        runs[-1].append({n: p.detach().clone() for n, p in learner.critic.named_parameters()})
    eager, comp = runs
    for m_eager, m_comp in zip(eager[:-1], comp[:-1], strict=True):
        assert m_comp == pytest.approx(m_eager, rel=1e-4, abs=1e-5)
    assert eager[-1].keys() == comp[-1].keys()  # checkpoints hold the same modules either way
    for name, value in eager[-1].items():
        torch.testing.assert_close(comp[-1][name], value, rtol=1e-4, atol=1e-5)


def test_refuses_actors_it_cannot_train():
    with pytest.raises(RobostackError, match="horizon 1"):
        SACLearner(SACConfig(), build_policy("gaussian", {"hidden_dims": [8]}, SPEC, STATS))
    with pytest.raises(RobostackError, match="critic_subset"):
        SACConfig(critics=2, critic_subset=3)
