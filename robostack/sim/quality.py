"""Data-quality tiers for scripted demonstrations; offline RL needs data of mixed quality (D4RL style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robostack.errors import RobostackError
from robostack.sim.base import Expert

TIERS = ("expert", "noisy", "medium", "random", "dart", "recovery", "mixed", "medium_mixed")
#: Tiers whose recorded ``action`` is a label that differs from the executed command (stored as ``executed_action``).
LABELLED_TIERS = ("dart",)
#: Tiers with steps that are not to be imitated (stored as ``imitate``: False on those steps).
MASKED_TIERS = ("recovery",)
#: DART execution noise: stationary standard deviation in normalised action units ([-1, 1]) and step-to-step
#: correlation. On push (40 seeds) these keep the expert at 100% success with episodes ~30% longer; the can
#: expert drops to 30% under the same noise (10 seeds), so it needs a smaller ``--dart-noise``.
DART_NOISE = 0.3
DART_CORR = 0.8
#: Share of each pure tier inside ``mixed`` episodes.
MIXED_WEIGHTS = {"expert": 0.4, "noisy": 0.4, "random": 0.2}
#: Offline-RL data in the spirit of D4RL's medium-expert / medium-replay: some expert episodes, more from a
#: mediocre actor that often fails, and exploratory random ones (``robostack data info`` shows the resulting mix).
MEDIUM_MIXED_WEIGHTS = {"expert": 0.3, "medium": 0.5, "random": 0.2}
MIXES = {"mixed": MIXED_WEIGHTS, "medium_mixed": MEDIUM_MIXED_WEIGHTS}
#: The ``medium`` tier: the expert with heavy action noise and frequent detours (push: about half succeed).
MEDIUM_NOISE, MEDIUM_DETOUR_P = 0.5, 0.2


def has_gripper(action: np.ndarray) -> bool:
    """The robosuite tasks' actions: 6 arm deltas and the gripper's command last; push's 2-D ones have no gripper."""
    return action.shape[0] == 7


def held_command(cmd: np.ndarray, expert_action: np.ndarray) -> np.ndarray:
    """A held random command with the expert's gripper kept: a perturbation that drops the object teaches nothing."""
    out = cmd.copy()
    if has_gripper(expert_action):
        out[-1] = expert_action[-1]
    return out


class NoisyExpert(Expert):
    """The expert with Gaussian action noise and occasional detours (a held random action for a few steps), and
    optionally slower (``speed`` < 1 scales its motion command, never the gripper's)."""

    def __init__(
        self,
        expert: Expert,
        rng: np.random.Generator,
        noise: float = 0.3,
        detour_p: float = 0.03,
        speed: float = 1.0,
    ) -> None:
        self.expert = expert
        self.rng = rng
        self.noise = noise
        self.detour_p = detour_p
        self.speed = speed
        self._detour: np.ndarray | None = None
        self._left = 0
        self.intent: np.ndarray | None = None
        """The undegraded expert's command at the last ``act``: what a simulated intervener judges by."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        a = self.expert.act(obs)  # always queried, so a stateful expert keeps its phase
        self.intent = a
        if self.speed != 1.0:
            a = a.copy()
            motion = slice(0, -1) if has_gripper(a) else slice(None)
            a[motion] *= self.speed
        if self._left == 0 and self.rng.random() < self.detour_p:
            self._detour = self.rng.uniform(-1.0, 1.0, a.shape).astype(np.float32)
            self._left = int(self.rng.integers(3, 9))
        if self._left > 0 and self._detour is not None:
            self._left -= 1
            return held_command(self._detour, a)
        return np.clip(a + self.rng.normal(0.0, self.noise, a.shape), -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Degradation:
    """How an expert is made worse: action noise, a per-step probability of a detour (a held random command for
    3-8 steps), and a speed factor on its motion command."""

    noise: float = 0.3
    detour_p: float = 0.0
    speed: float = 1.0


#: Degraded experts for simulated interveners, by the success they are meant to have on their own
#: (``benchmarks/expert_levels.py`` measures each). An intervener's expert must be a usable labeller, since every
#: step it takes over becomes a training label (HG-DAgger) or a transition to learn from (RLIF): detours put random
#: commands into the labels (at push's first calibration, 13.5-27.5% per step, 43-60% of the expert's steps were
#: detour commands, and HG-DAgger trained on them fell from 16% to 2%), so push's levels are a slower expert with
#: action noise -- a cautious operator that runs out of time, whose every command still points the right way.
#: Lift keeps detours at low rates (its noise alone already costs a third of its successes; 5-18% of its steps
#: are detours at these rates).
EXPERT_LEVELS: dict[str, dict[float, Degradation]] = {
    "push": {0.9: Degradation(speed=0.31), 0.6: Degradation(speed=0.245), 0.3: Degradation(speed=0.2)},
    "lift": {0.6: Degradation(detour_p=0.01), 0.3: Degradation(detour_p=0.04)},
}


def degraded_expert(task: str, level: float, expert: Expert, rng: np.random.Generator) -> Expert:
    """The task's expert degraded to about ``level`` success (1.0: the expert itself)."""
    if level >= 1.0:
        return expert
    levels = EXPERT_LEVELS.get(task, {})
    if level not in levels:
        known = ", ".join(str(x) for x in sorted(levels)) or "none"
        raise RobostackError(f"no expert level {level} for task '{task}' (calibrated: {known}, or 1.0)")
    d = levels[level]
    return NoisyExpert(expert, rng, noise=d.noise, detour_p=d.detour_p, speed=d.speed)


class DartExpert(Expert):
    """DART (Laskey et al., 2017): execute the expert's command plus noise, record the expert's own command.

    The noise carries the demonstrations into states the clean expert never visits (a block off line, a pusher
    overshooting the goal) and labels them with the expert's correction, which is what a cloned policy needs when
    its own errors compound. The noise is temporally correlated (AR(1), stationary std ``noise``): a cloned policy
    errs for a whole action chunk, not one step at a time, and i.i.d. noise of the same size is absorbed by the
    push expert's feedback before the state moves. The executed commands are
    stored too (``executed_action``), so replay stays exact.
    """

    def __init__(
        self, expert: Expert, rng: np.random.Generator, noise: float = DART_NOISE, corr: float = DART_CORR
    ) -> None:
        self.expert = expert
        self.rng = rng
        self.noise = noise
        self.corr = corr
        self._n: np.ndarray | None = None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.act_labelled(obs)[0]

    def act_labelled(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        label = np.asarray(self.expert.act(obs), np.float32)
        eps = self.rng.normal(0.0, self.noise, label.shape)
        self._n = eps if self._n is None else self.corr * self._n + np.sqrt(1.0 - self.corr**2) * eps
        noise = self._n.copy()
        if has_gripper(label):
            noise[-1] = 0.0  # a gripper command is binary: noise there would only flicker it
        return np.clip(label + noise, -1.0, 1.0).astype(np.float32), label


class RecoveryExpert(Expert):
    """The expert, knocked off course by short bursts of a held random command, then recovering on its own.

    Clean demonstrations never leave the expert's narrow path, so a cloned policy that drifts off it meets states
    without labels (on push: a block left a few centimetres beside the goal). Here each perturbed episode gets up
    to ``max_bursts`` bursts of ``burst_len`` steps, each starting with probability ``burst_p`` per step after the
    first ``warmup`` steps; the expert's recovery from wherever a burst left the scene is recorded as executed, so
    every imitated action chunk is one the expert really carried out (unlike DART's relabelled chunks). The burst's
    own steps are flagged ``imitating = False`` and kept out of the training loss. ``clean_p`` of the episodes
    stay unperturbed, so the data keeps the expert's plain path as well.
    """

    def __init__(
        self,
        expert: Expert,
        rng: np.random.Generator,
        burst_p: float = 0.05,
        burst_len: tuple[int, int] = (4, 10),
        max_bursts: int = 2,
        warmup: int = 5,
        clean_p: float = 0.3,
    ) -> None:
        self.expert = expert
        self.rng = rng
        self.burst_p = burst_p
        self.burst_len = burst_len
        self.bursts_left = 0 if rng.random() < clean_p else max_bursts
        self.warmup = warmup
        self.imitating = True
        self._t = 0
        self._left = 0
        self._cmd: np.ndarray | None = None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        a = np.asarray(
            self.expert.act(obs), np.float32
        )  # always queried, so a stateful expert keeps its phase
        self._t += 1
        if (
            self._left == 0
            and self.bursts_left > 0
            and self._t > self.warmup
            and self.rng.random() < self.burst_p
        ):
            self.bursts_left -= 1
            self._left = int(self.rng.integers(self.burst_len[0], self.burst_len[1] + 1))
            self._cmd = self.rng.uniform(-1.0, 1.0, a.shape).astype(np.float32)
        if self._left > 0 and self._cmd is not None:
            self._left -= 1
            self.imitating = False
            return held_command(self._cmd, a)
        self.imitating = True
        return a


class RandomActor(Expert):
    """Temporally correlated random actions (an Ornstein-Uhlenbeck walk): exploratory, rarely successful."""

    def __init__(
        self, action_dim: int, rng: np.random.Generator, theta: float = 0.15, sigma: float = 0.3
    ) -> None:
        self.rng = rng
        self.x = np.zeros(action_dim)
        self.theta = theta
        self.sigma = sigma

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.x += -self.theta * self.x + self.sigma * self.rng.normal(size=self.x.shape)
        return np.clip(self.x, -1.0, 1.0).astype(np.float32)


def pick_tier(quality: str, rng: np.random.Generator) -> str:
    """The pure tier an episode is generated with (``mixed`` and ``medium_mixed`` draw one per episode)."""
    if quality not in TIERS:
        raise RobostackError(f"unknown quality '{quality}' (choose from {', '.join(TIERS)})")
    if quality not in MIXES:
        return quality
    weights = MIXES[quality]
    names = list(weights)
    return str(rng.choice(names, p=[weights[n] for n in names]))


def make_actor(
    tier: str, expert: Expert, action_dim: int, rng: np.random.Generator, dart_noise: float = DART_NOISE
) -> Expert:
    if tier == "expert":
        return expert
    if tier == "noisy":
        return NoisyExpert(expert, rng)
    if tier == "medium":
        return NoisyExpert(expert, rng, noise=MEDIUM_NOISE, detour_p=MEDIUM_DETOUR_P)
    if tier == "random":
        return RandomActor(action_dim, rng)
    if tier == "dart":
        return DartExpert(expert, rng, noise=dart_noise)
    if tier == "recovery":
        return RecoveryExpert(expert, rng)
    raise RobostackError(f"cannot act with tier '{tier}'")
