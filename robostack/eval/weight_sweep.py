"""Evaluate one composed (GPC) policy at many weightings in a single pool of workers: each worker loads the
composite once and switches weights per episode, and every weighting sees the same seeds and the same sampler noise
(common random numbers), so differences between weightings are not seed luck."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import defaultdict

from tqdm import tqdm

from robostack.errors import RobostackError
from robostack.eval.evaluate import (
    _STATE,
    EpisodeResult,
    EvalResult,
    _episode,
    _init,
    _summarise,
    check_policy_fits_task,
)


def _weighted_episode(job: tuple[int, list[float], int]) -> tuple[int, EpisodeResult]:
    index, weights, seed = job
    _STATE["policy"].set_weights(weights)
    return index, _episode(seed)


def evaluate_weightings(
    policy_path: str | os.PathLike[str],
    task: str,
    weightings: list[list[float]],
    seeds: list[int],
    workers: int = 1,
    n_action_steps: int | None = None,
    num_steps: int | None = None,
    progress: bool = True,
) -> list[EvalResult]:
    """One EvalResult per weighting, each over ``seeds``."""
    from robostack.runtime.loader import load_any_policy, read_any_spec

    check_policy_fits_task(read_any_spec(policy_path), task)
    probe = load_any_policy(policy_path, threads=1)
    if not hasattr(probe, "set_weights"):
        raise RobostackError(f"{policy_path}: not a composed policy (it has no weights to sweep)")
    for w in weightings:
        probe.set_weights(
            w
        )  # refuse a bad weighting here: a worker that raises makes the pool respawn forever
    del probe
    jobs = [(i, w, s) for i, w in enumerate(weightings) for s in seeds]
    per: dict[int, list[EpisodeResult]] = defaultdict(list)
    seconds: dict[int, float] = defaultdict(float)
    bar = tqdm(total=len(jobs), desc=f"weights {task}", unit="ep", disable=None if progress else True)
    args = (str(policy_path), task, None, n_action_steps, num_steps)
    t0 = time.perf_counter()
    if workers <= 1:
        import torch

        threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
        try:
            _init(*args)
            for job in jobs:
                t = time.perf_counter()
                i, r = _weighted_episode(job)
                per[i].append(r)
                seconds[i] += time.perf_counter() - t
                bar.update(1)
        finally:
            torch.set_num_threads(threads)
            torch.set_rng_state(rng_state)
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=args) as pool:
            for i, r in pool.imap(_weighted_episode, jobs):
                per[i].append(r)
                bar.update(1)
        wall = time.perf_counter() - t0
        seconds = defaultdict(float, {i: wall / len(weightings) for i in range(len(weightings))})
    bar.close()
    name = str(policy_path)
    return [_summarise(f"{name}@{w}", task, per[i], seconds[i]) for i, w in enumerate(weightings)]
