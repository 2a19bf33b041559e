"""Interventions as data: RLIF's reward from ``is_intervention``, and the simulated interveners that produce them.

RLIF's reward (pd-perry/RLIF): the transition just before a takeover starts gets -1, every other transition 0.
A takeover is a run of ``is_intervention`` steps; its onset is its first step. A takeover that starts at an
episode's first step has no policy transition before it in that episode and costs nothing (the previous episode's
last step did not cause it).

Simulated interveners decide, per environment copy and step, whether the expert takes over; a takeover lasts
``duration`` steps (it can be extended by a new decision at its end). Each rule is documented where it is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robostack.errors import RobostackError

INTERVENERS = ("deviation", "random", "value")


def intervention_rewards(is_intervention: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """-1 on the row just before each takeover onset (within its episode), 0 elsewhere; one reward per row."""
    flags = np.asarray(is_intervention, bool)
    n = flags.shape[0]
    ends = np.asarray(episode_ends, np.int64)
    if n != (int(ends[-1]) if len(ends) else 0):
        raise RobostackError(f"{n} intervention flags for {int(ends[-1]) if len(ends) else 0} rows")
    first = np.zeros(n, bool)
    if n:
        first[np.concatenate([[0], ends[:-1]]).astype(np.int64)] = True
    previous = np.concatenate([[False], flags[:-1]]) & ~first
    onset = flags & ~previous
    reward = np.zeros(n, np.float32)
    before = np.flatnonzero(onset & ~first) - 1
    reward[before] = -1.0
    return reward


@dataclass
class IntervenerConfig:
    rule: str = "deviation"
    """deviation | random | value."""
    duration: int = 4
    """Steps a takeover lasts (RLIF: 4)."""
    threshold: float = 0.5
    """deviation: normalised action distance |a_policy - a_expert| / sqrt(Da) that counts as straying."""
    patience: int = 3
    """deviation: consecutive straying steps before a takeover."""
    probability: float = 0.05
    """random: per-step probability that a takeover starts."""
    alpha: float = 0.97
    """value: take over when Q_ref(s, a_policy) < alpha * Q_ref(s, a_expert) (RLIF's pen: 0.97)."""
    p_true: float = 0.95
    """value: probability of acting on a positive judgement (and 1 - p_true on a negative one), as in RLIF."""

    def __post_init__(self) -> None:
        if self.rule not in INTERVENERS:
            raise RobostackError(f"unknown intervener '{self.rule}' (choose from {', '.join(INTERVENERS)})")
        if self.duration < 1 or self.patience < 1:
            raise RobostackError("duration and patience must be at least 1")


class Intervener:
    """Per-copy takeover state for N environment copies. ``decide`` is called once per step before acting and
    returns which copies the expert drives this step."""

    def __init__(self, cfg: IntervenerConfig, num_envs: int, rng: np.random.Generator, value_fn=None) -> None:
        if cfg.rule == "value" and value_fn is None:
            raise RobostackError("the value intervener needs a reference critic")
        self.cfg, self.rng, self.value_fn = cfg, rng, value_fn
        self.left = np.zeros(num_envs, np.int64)  # steps of the current takeover still to run
        self.straying = np.zeros(num_envs, np.int64)

    def decide(self, obs: dict[str, np.ndarray], policy_action: np.ndarray, expert_action: np.ndarray,
               action_scale: np.ndarray, intent: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Bool (N,): the expert acts. ``action_scale`` maps actions to [-1, 1] units (half the action range).
        ``intent``: what the undegraded expert would do (``VectorEnv.expert_decisions``); the rules judge the
        policy against it when given (a degraded expert still judges like the expert), else against
        ``expert_action``."""
        cfg = self.cfg
        judge = expert_action if intent is None else intent
        active = self.left > 0
        if cfg.rule == "deviation":
            dist = np.linalg.norm((policy_action - judge) / action_scale, axis=1) / np.sqrt(
                policy_action.shape[1]
            )
            self.straying = np.where(dist > cfg.threshold, self.straying + 1, 0)
            start = self.straying >= cfg.patience
        elif cfg.rule == "random":
            start = self.rng.random(self.left.shape[0]) < cfg.probability
        else:  # value: RLIF's rule on a reference critic
            worse = self.value_fn(obs, policy_action) < cfg.alpha * self.value_fn(obs, judge)
            start = self.rng.random(self.left.shape[0]) < np.where(worse, cfg.p_true, 1.0 - cfg.p_true)
        begin = ~active & start
        self.left = np.where(begin, cfg.duration, self.left)
        self.straying = np.where(begin, 0, self.straying)
        acting = self.left > 0
        self.left = np.maximum(self.left - 1, 0)
        return acting

    def episode_done(self, done: np.ndarray) -> None:
        """Copies whose episode ended start the next one without a takeover."""
        self.left = np.where(done, 0, self.left)
        self.straying = np.where(done, 0, self.straying)
