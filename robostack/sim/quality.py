"""Data-quality tiers for scripted demonstrations; offline RL needs data of mixed quality (D4RL style)."""

from __future__ import annotations

import numpy as np

from robostack.errors import RobostackError
from robostack.sim.base import Expert

TIERS = ("expert", "noisy", "random", "mixed")
#: Share of each pure tier inside ``mixed`` episodes.
MIXED_WEIGHTS = {"expert": 0.4, "noisy": 0.4, "random": 0.2}


class NoisyExpert(Expert):
    """The expert with Gaussian action noise and occasional detours (a held random action for a few steps)."""

    def __init__(
        self, expert: Expert, rng: np.random.Generator, noise: float = 0.3, detour_p: float = 0.03
    ) -> None:
        self.expert = expert
        self.rng = rng
        self.noise = noise
        self.detour_p = detour_p
        self._detour: np.ndarray | None = None
        self._left = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        a = self.expert.act(obs)  # always queried, so a stateful expert keeps its phase
        if self._left == 0 and self.rng.random() < self.detour_p:
            self._detour = self.rng.uniform(-1.0, 1.0, a.shape).astype(np.float32)
            self._left = int(self.rng.integers(3, 9))
        if self._left > 0 and self._detour is not None:
            self._left -= 1
            out = self._detour.copy()
            out[-1:] = a[-1:] if a.shape[0] == 7 else out[-1:]  # keep the gripper command of the expert
            return out
        return np.clip(a + self.rng.normal(0.0, self.noise, a.shape), -1.0, 1.0).astype(np.float32)


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
    """The pure tier an episode is generated with (``mixed`` draws one per episode)."""
    if quality not in TIERS:
        raise RobostackError(f"unknown quality '{quality}' (choose from {', '.join(TIERS)})")
    if quality != "mixed":
        return quality
    names = list(MIXED_WEIGHTS)
    return str(rng.choice(names, p=[MIXED_WEIGHTS[n] for n in names]))


def make_actor(tier: str, expert: Expert, action_dim: int, rng: np.random.Generator) -> Expert:
    if tier == "expert":
        return expert
    if tier == "noisy":
        return NoisyExpert(expert, rng)
    if tier == "random":
        return RandomActor(action_dim, rng)
    raise RobostackError(f"cannot act with tier '{tier}'")
