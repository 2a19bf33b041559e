"""RLIF's reward on hand-made intervention sequences, and the simulated interveners' rules."""

from __future__ import annotations

import numpy as np
import pytest

from robostack.algos.interventions import Intervener, IntervenerConfig, intervention_rewards
from robostack.errors import RobostackError


def _r(flags, ends):
    return intervention_rewards(np.array(flags, bool), np.array(ends)).tolist()


def test_reward_marks_the_step_before_each_onset_only():
    # one long takeover: one penalty, on the step before it
    assert _r([0, 0, 1, 1, 1, 0], [6]) == [0, -1, 0, 0, 0, 0]
    # back-to-back takeovers separated by one policy step: two penalties
    assert _r([0, 1, 1, 0, 1, 1], [6]) == [-1, 0, 0, -1, 0, 0]
    # a takeover at an episode's first step costs nothing (no policy transition before it in that episode)
    assert _r([1, 1, 0, 0], [4]) == [0, 0, 0, 0]
    assert _r([0, 0, 1, 0, 0], [2, 5]) == [0, 0, 0, 0, 0]  # episode 2 starts under a takeover
    # an onset at an episode's last step penalises the step before it
    assert _r([0, 0, 0, 1], [4]) == [0, 0, -1, 0]
    # a takeover running over an episode boundary starts again in the next episode (its first step: free)
    assert _r([0, 1, 1, 1, 0], [2, 5]) == [-1, 0, 0, 0, 0]
    assert _r([], []) == []
    with pytest.raises(RobostackError, match="flags"):
        _r([0, 1], [3])


def test_deviation_rule_takes_over_after_patience_for_duration():
    cfg = IntervenerConfig(rule="deviation", threshold=0.5, patience=2, duration=3)
    iv = Intervener(cfg, 2, np.random.default_rng(0))
    scale = np.ones(2)
    expert = np.zeros((2, 2))
    far, near = np.array([[1.0, 1.0], [0.0, 0.1]]), np.zeros((2, 2))
    got = [iv.decide({}, far, expert, scale).tolist() for _ in range(2)]
    assert got == [[False, False], [True, False]]  # copy 0 strays twice -> takeover; copy 1 stays close
    got = [iv.decide({}, near, expert, scale)[0] for _ in range(3)]
    assert got == [True, True, False]  # the takeover lasts 3 steps in all
    iv.decide({}, far, expert, scale)
    iv.episode_done(np.array([True, False]))
    assert not iv.decide({}, far, expert, scale)[0]  # straying counts restart with the episode


def test_random_and_value_rules():
    iv = Intervener(
        IntervenerConfig(rule="random", probability=0.25, duration=1), 4000, np.random.default_rng(1)
    )
    rate = iv.decide({}, np.zeros((4000, 2)), np.zeros((4000, 2)), np.ones(2)).mean()
    assert 0.22 < rate < 0.28
    value = lambda obs, a: -np.abs(a[:, 0])  # noqa: E731 - the expert's action 0 is worth most
    iv = Intervener(
        IntervenerConfig(rule="value", alpha=0.97, p_true=1.0, duration=1), 2, np.random.default_rng(2), value
    )
    acting = iv.decide({}, np.array([[0.9, 0], [0.0, 0]]), np.array([[0.0, 0], [0.5, 0]]), np.ones(2))
    assert acting.tolist() == [True, False]
    with pytest.raises(RobostackError, match="reference critic"):
        Intervener(IntervenerConfig(rule="value"), 1, np.random.default_rng(0))
    with pytest.raises(RobostackError, match="unknown intervener"):
        IntervenerConfig(rule="nope")


def test_interveners_judge_by_the_experts_intent_when_given():
    cfg = IntervenerConfig(rule="deviation", threshold=0.5, patience=1, duration=1)
    scale = np.ones(2)
    policy = np.array([[1.0, 0.0]])
    slow = np.array([[0.2, 0.0]])  # a slow expert going the same way: its command strays from the policy's
    intent = np.array([[1.0, 0.0]])  # what it means to do: the policy's action
    assert Intervener(cfg, 1, np.random.default_rng(0)).decide({}, policy, slow, scale)[0]
    assert not Intervener(cfg, 1, np.random.default_rng(0)).decide({}, policy, slow, scale, intent)[0]


def test_a_degraded_expert_reports_its_undegraded_intent():
    from robostack.sim.vector_env import VectorEnv

    with VectorEnv("push", 2, 5, 0, expert_level=0.6) as env:
        env.reset()
        action, intent = env.expert_decisions()
        clean = np.stack([e.expert.act(o) for e, o in zip(env._local.experts, env._local.obs, strict=True)])
    np.testing.assert_array_equal(intent, clean)
    assert not np.allclose(action, intent)  # slower and noisy
    with VectorEnv("push", 2, 5, 0, expert_level=1.0) as env:  # the expert itself: judged by its own actions
        env.reset()
        action, intent = env.expert_decisions()
    np.testing.assert_array_equal(action, intent)
