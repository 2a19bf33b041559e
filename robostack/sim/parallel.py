"""Process-parallel episode generation: each worker owns one simulator and runs whole episodes.

Scripted experts read privileged simulator state, so they run next to their env inside the worker; results come
back in submission order, so the store's content does not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from robostack.sim.quality import DART_NOISE, LABELLED_TIERS, MASKED_TIERS, make_actor, pick_tier
from robostack.sim.rollout import Episode, run_episode

_TASK: Any = None


def _init_worker(task_name: str, task_kwargs: dict[str, Any]) -> None:
    global _TASK
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from robostack.sim.registry import make_task

    _TASK = make_task(task_name, **task_kwargs)


def _episode_rng(seed: int) -> np.random.Generator:
    # Expert choices and tier draws come from their own stream, so they never perturb the env's reset seed.
    return np.random.default_rng([seed, 0x5EED])


def _run(job: tuple[int, str, float]) -> Episode:
    seed, quality, dart_noise = job
    rng = _episode_rng(seed)
    tier = pick_tier(quality, rng)
    dim = _TASK.task_spec.action.shape[0]
    # A store has one set of features, so a quality whose episodes carry labels records executed_action throughout.
    labelled = quality in LABELLED_TIERS
    return run_episode(
        _TASK,
        lambda: make_actor(tier, _TASK.make_expert(rng), dim, rng, dart_noise),
        seed,
        tier,
        labelled=labelled,
        masked=quality in MASKED_TIERS,
    )


def generate_episodes(
    task_name: str,
    seeds: list[int],
    quality: str,
    workers: int = 1,
    task_kwargs: dict[str, Any] | None = None,
    dart_noise: float = DART_NOISE,
) -> Iterator[Episode]:
    """Yield one Episode per seed, in order. ``workers=1`` runs in this process (no start-up cost)."""
    task_kwargs = task_kwargs or {}
    jobs = [(s, quality, dart_noise) for s in seeds]
    if workers <= 1:
        _init_worker(task_name, task_kwargs)
        for job in jobs:
            yield _run(job)
        return
    ctx = mp.get_context("spawn")  # MuJoCo/EGL contexts do not survive fork
    with ctx.Pool(workers, initializer=_init_worker, initargs=(task_name, task_kwargs)) as pool:
        yield from pool.imap(_run, jobs, chunksize=1)
