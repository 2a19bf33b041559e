"""``robostack generate``: a trained policy writes demonstrations into a store.

Episodes are full simulated rollouts (observations, action, reward, flags, ``sim_state`` for exact replay), source
``generated``, quality ``policy``. With ``keep='success'`` rollouts continue until ``episodes`` successes are stored;
the stored episodes are the first successes in seed order, so the store does not depend on the worker count. The
generating policy's fingerprint (sha256 of its files) goes into the store's provenance and, for every run that
appended to it, into the ``generators`` attribute.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robostack.errors import RobostackError
from robostack.eval.metrics import wilson_interval
from robostack.sim.rollout import Episode, episode_features, run_episode
from robostack.utils.table import format_table

KEEP = ("success", "all")
MAX_ATTEMPTS_PER_EPISODE = 20
"""With ``keep='success'``, give up after this many rollouts per requested episode (a policy at < 5% success)."""


@dataclass
class GenerateConfig:
    """One generation run (saved in the store's provenance)."""

    policy: str
    """Training run, policy folder or exported .onnx model."""
    task: str
    episodes: int
    """Episodes to store."""
    out: str
    keep: str = "success"
    """success: roll out until ``episodes`` successful episodes are stored | all: store every rollout."""
    workers: int = 1
    seed: int | None = None
    """First rollout seed (default: after the largest seed already in the store, else 0)."""
    fsync: bool = False

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise RobostackError("--episodes must be at least 1")
        if self.keep not in KEEP:
            raise RobostackError(f"--keep must be one of {', '.join(KEEP)}, got '{self.keep}'")
        if self.workers < 1:
            raise RobostackError("--workers must be at least 1")


def policy_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 over the files that define a policy (an .onnx file, or every file of its policy folder)."""
    from robostack.policies.loading import resolve_policy_folder
    from robostack.runtime.loader import is_exported_model

    p = Path(path)
    files = (
        [p] if is_exported_model(p) else sorted(f for f in resolve_policy_folder(p).rglob("*") if f.is_file())
    )
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class _PolicyActor:
    """A policy behind the scripted-actor interface that ``run_episode`` drives."""

    imitating = True

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def act_labelled(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(self.policy.select_action({f"obs/{k}": v for k, v in obs.items()}), np.float32)
        return a, a


_STATE: dict[str, Any] = {}


def task_kwargs_for(policy_spec: Any) -> dict[str, Any]:
    """The task options (cameras, image size) a policy's observations need."""
    cams = {k.removeprefix("obs/image_"): size for k, size in policy_spec.image_keys.items()}
    return {"cameras": tuple(cams), "image_size": next(iter(cams.values()))} if cams else {}


def _init(policy_path: str, task_name: str) -> None:
    import torch

    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)  # one thread per worker; processes give the parallelism
    from robostack.runtime.loader import load_any_policy
    from robostack.sim.registry import make_task

    policy = load_any_policy(policy_path, threads=1)
    _STATE["policy"] = policy
    _STATE["task"] = make_task(task_name, **task_kwargs_for(policy.spec))


def _rollout(seed: int) -> Episode:
    import torch

    policy = _STATE["policy"]

    def actor() -> _PolicyActor:
        policy.reset()
        torch.manual_seed(seed)  # the sampler's noise: an episode depends on its seed only
        if hasattr(policy, "seed"):
            policy.seed(seed)
        return _PolicyActor(policy)

    return run_episode(_STATE["task"], actor, seed, "policy")


@dataclass
class GenerateSummary:
    stored: int
    rollouts: int
    successes_seen: int
    steps: int
    seconds: float
    mean_length: float
    store_episodes: int

    def table(self) -> str:
        lo, hi = wilson_interval(self.successes_seen, self.rollouts)
        rows = [
            ("episodes stored", str(self.stored)),
            (
                "rollouts (success)",
                f"{self.rollouts} ({100 * self.successes_seen / max(self.rollouts, 1):.1f}%, "
                f"95% {100 * lo:.1f}-{100 * hi:.1f})",
            ),
            ("mean stored length", f"{self.mean_length:.1f} steps"),
            ("env steps / s", f"{self.steps / max(self.seconds, 1e-9):,.0f}"),
            ("wall time", f"{self.seconds:.1f} s"),
            ("store now holds", f"{self.store_episodes} episodes"),
        ]
        return format_table(["generate", ""], rows)


def _rollouts(cfg: GenerateConfig, first: int, pool: Any) -> Any:
    """Rollouts in seed order, in batches so that ``keep='success'`` stops soon after it has enough."""
    batch = max(4 * cfg.workers, 8)
    seed = first
    while True:
        seeds = list(range(seed, seed + batch))
        seed += batch
        yield from (pool.imap(_rollout, seeds) if pool is not None else map(_rollout, seeds))


def generate(cfg: GenerateConfig, progress: bool = True) -> GenerateSummary:
    from robostack.data.store import EpisodeStore
    from robostack.eval.evaluate import check_policy_fits_task
    from robostack.runtime.loader import read_any_spec
    from robostack.sim.demos import open_task_store
    from robostack.sim.registry import make_task

    spec = read_any_spec(cfg.policy)
    check_policy_fits_task(spec, cfg.task)
    fingerprint = policy_fingerprint(cfg.policy)
    kwargs = task_kwargs_for(spec)
    probe = make_task(cfg.task, **kwargs)
    feats = episode_features(probe)
    probe.close()
    config = {**asdict(cfg), "policy_fingerprint": fingerprint}
    writer, next_seed = open_task_store(cfg.out, cfg.task, feats, config, kwargs, cfg.fsync)
    first = next_seed if cfg.seed is None else cfg.seed
    limit = cfg.episodes * (MAX_ATTEMPTS_PER_EPISODE if cfg.keep == "success" else 1)
    stored = rollouts = successes = steps = 0
    lengths: list[int] = []
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.episodes, desc=f"generate {cfg.task}", unit="ep", disable=None if progress else True)
    pool = None
    try:
        if cfg.workers > 1:
            pool = mp.get_context("spawn").Pool(
                cfg.workers, initializer=_init, initargs=(cfg.policy, cfg.task)
            )
        else:
            _init(cfg.policy, cfg.task)
        for ep in _rollouts(cfg, first, pool):
            rollouts += 1
            successes += ep.success
            steps += ep.length
            if ep.success or cfg.keep == "all":
                writer.add_episode(
                    ep.data,
                    success=ep.success,
                    source="generated",
                    task=cfg.task,
                    seed=ep.seed,
                    quality="policy",
                )
                stored += 1
                lengths.append(ep.length)
                bar.update(1)
            bar.set_postfix(rollouts=rollouts, success=f"{successes / rollouts:.0%}")
            if stored == cfg.episodes or rollouts >= limit:
                break
        generators = list(writer.group.attrs.get("generators", []))
        generators.append(
            {
                "policy": str(cfg.policy),
                "policy_fingerprint": fingerprint,
                "first_seed": first,
                "rollouts": rollouts,
                "stored": stored,
                "keep": cfg.keep,
            }
        )
        writer.update_attrs(generators=generators)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        writer.close()
    if stored < cfg.episodes:
        raise RobostackError(
            f"only {stored} of {cfg.episodes} successful episodes in {rollouts} rollouts "
            f"({100 * successes / rollouts:.1f}% success); the {stored} found are committed to {cfg.out}"
        )
    return GenerateSummary(
        stored=stored,
        rollouts=rollouts,
        successes_seen=successes,
        steps=steps,
        seconds=time.perf_counter() - t0,
        mean_length=float(np.mean(lengths)),
        store_episodes=EpisodeStore(cfg.out).n_episodes,
    )
