"""How well a degraded expert does on its own: the bar an interactive learner is measured against."""

from __future__ import annotations

import numpy as np

from robostack.sim.vector_env import VectorEnv


def expert_success(task: str, level: float, first_seed: int, episodes: int, envs: int = 8) -> tuple[int, int]:
    """(successes, episodes) of the expert degraded to ``level`` acting alone on the episodes of seeds
    ``first_seed .. first_seed + episodes - 1``: a fixed set, not the first ones to finish (successful episodes end
    sooner, so counting those would favour success)."""
    succ = done = 0
    envs = max(1, min(envs, episodes))
    with VectorEnv(task, envs, seed=first_seed, expert_level=level) as env:
        env.reset()
        while done < episodes:
            step = env.step(env.expert_actions())
            for i in np.flatnonzero(step.done & (step.episode_seed < first_seed + episodes)):
                succ += int(step.success[i])
                done += 1
    return succ, done
