"""Offline-to-online RL runs for IQL and FamO2O: ``robostack train --algo iql|famo2o`` (offline, from stores of mixed
quality, optionally followed by an online phase in the same run) and ``robostack finetune --algo iql|famo2o --from
RUN`` (online, from an offline run's folder).

Reward convention (IQL's for AntMaze-like sparse tasks): the store's reward is the task's success signal (1 on the
step that succeeds, which terminates the episode, else 0); learning uses r - 1, so every step costs -1 until success
and a terminal success is worth 0. Online transitions get the same shift. Every episode counts offline, successes
and failures alike. Online, offline and online transitions share one replay buffer sampled uniformly (IQL's and
FamO2O's fine-tuning), online episodes go to ``<run>/online.zarr``, and checkpoints are policy folders (a gaussian
actor for IQL, the famo2o pair for FamO2O) with the learner's whole state beside them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.famo2o import BalanceConfig, FamO2OLearner
from robostack.algos.iql import IQLConfig, IQLLearner
from robostack.algos.online_data import ONLINE_SEEDS, EpisodeRows, check_fits, online_store_info
from robostack.algos.registry import register_algorithm
from robostack.algos.rlif import save_learner
from robostack.config import from_dict, load_yaml
from robostack.data.normalize import KeyStats
from robostack.data.replay import ReplayBuffer
from robostack.data.schema import SOURCES
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import RobostackError, StoreError
from robostack.eval.seeds import RANGES
from robostack.policies.base import PolicySpec
from robostack.policies.checkpoint import build_policy, load_policy
from robostack.policies.loading import resolve_policy_folder
from robostack.sim.registry import task_names, task_spec
from robostack.sim.vector_env import VectorEnv
from robostack.train.data import make_spec, to_tensors
from robostack.train.hooks import evaluate_checkpoint
from robostack.train.run_log import RunLog, write_run_files
from robostack.train.state import load_train_state

REWARD_SHIFT = -1.0
FAMILY = {"iql": "gaussian", "famo2o": "famo2o"}
POLICY_DEFAULTS = {
    "gaussian": {"horizon": 1, "n_action_steps": 1, "n_obs_steps": 1, "hidden_dims": [256, 256]},
    "famo2o": {},
}


@dataclass
class O2OData:
    path: str = ""
    """Store of mixed-quality episodes (needs ``reward`` and ``terminated``)."""
    more: list[str] = field(default_factory=list)
    """Further stores of the same task, trained on together."""

    @property
    def paths(self) -> list[str]:
        return [p for p in [self.path, *self.more] if p]


@dataclass
class OnlinePhase:
    """The online phase: in ``robostack finetune``, or after the offline steps of a ``train`` run with a task."""

    task: str = ""
    env_steps: int = 0
    envs: int = 8
    workers: int = 0
    updates_per_env_step: float = 1.0
    replay_capacity: int = 2_000_000
    eval_every: int = 5000
    """Evaluate (no exploration noise) every N environment steps; 0: only at the end."""


@dataclass
class O2OConfig:
    algo: str = "iql"
    policy: dict[str, Any] = field(default_factory=dict)
    data: O2OData = field(default_factory=O2OData)
    iql: IQLConfig = field(default_factory=IQLConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    steps: int = 100_000
    """Offline gradient steps."""
    seed: int = 0
    device: str = "cpu"
    log_every: int = 1000
    save_every: int = 10_000
    eval_every: int = 0
    """Evaluate every N offline steps (0: only after the last)."""
    eval_episodes: int = 50
    eval_workers: int = 1
    online: OnlinePhase = field(default_factory=OnlinePhase)

    def __post_init__(self) -> None:
        if self.algo not in FAMILY:
            raise RobostackError(
                f"unknown offline-to-online algorithm '{self.algo}' (choose from iql, famo2o)"
            )
        family = FAMILY[self.algo]
        if self.policy.get("type", family) != family:
            raise RobostackError(f"--algo {self.algo} trains a {family} policy, not '{self.policy['type']}'")
        self.policy = {**POLICY_DEFAULTS[family], **self.policy, "type": family}
        if self.steps < 0 or self.log_every < 1 or self.save_every < 1:
            raise RobostackError("steps must be >= 0 and log_every, save_every >= 1")


@dataclass
class IQLTrainConfig(O2OConfig):
    algo: str = "iql"


@dataclass
class FamO2OTrainConfig(O2OConfig):
    algo: str = "famo2o"


@dataclass
class O2OFinetuneConfig:
    algo: str = "iql"
    from_run: str = ""
    """An offline ``robostack train --algo iql|famo2o`` run (its last checkpoint and its data)."""
    task: str = ""
    env_steps: int = 100_000
    envs: int = 8
    workers: int = 0
    seed: int = 0
    updates_per_env_step: float = 1.0
    replay_capacity: int = 2_000_000
    eval_every: int = 5000
    eval_episodes: int = 50
    eval_workers: int = 1
    device: str = "cpu"
    log_every: int = 1000

    def __post_init__(self) -> None:
        if not self.from_run:
            raise RobostackError("--from is required: an offline `robostack train --algo iql|famo2o` run")
        if not self.task:
            raise RobostackError("--task is required: the simulated task to fine-tune in")
        if self.env_steps < self.envs or self.envs < 1:
            raise RobostackError(f"need env_steps ({self.env_steps}) >= envs ({self.envs}) >= 1")


# ---------------------------------------------------------------------------------------------------- data
def check_stores(paths: list[str]) -> tuple[list[str], str, EpisodeStore]:
    """(observation keys, task, the first store: its spec bounds) after checking that every store has
    rewards and terminals and that all record the same task with the same keys."""
    if not paths:
        raise RobostackError("--data is required: a store of mixed-quality episodes")
    keys: list[str] | None = None
    task = ""
    first = None
    for p in paths:
        store = EpisodeStore(p)
        missing = [k for k in ("reward", "terminated") if k not in store.keys]
        if missing:
            raise StoreError(
                f"{store.path}: no {' or '.join(missing)} (offline RL learns from rewards and terminals)"
            )
        own = sorted(
            k for k in store.keys if k.startswith("obs/") and store.info.features[k].dtype != "uint8"
        )
        tasks = sorted(set(store.info.tasks))
        if keys is None:
            keys, task, first = own, (tasks[0] if tasks else ""), store
        elif own != keys or (tasks and task and tasks[0] != task):
            raise StoreError(
                f"{store.path}: records task {', '.join(tasks) or '?'} with keys {own}; {paths[0]} records "
                f"{task or '?'} with {keys}: train on stores of one task"
            )
    assert keys is not None and first is not None
    return keys, task, first


def shifted_reward(buf: Any) -> np.ndarray:
    return buf.data["reward"].astype(np.float32) + REWARD_SHIFT


def stats_of(arrays: dict[str, np.ndarray], keys: list[str]) -> dict[str, KeyStats]:
    out = {}
    for k in [*keys, "action"]:
        x = np.asarray(arrays[k], np.float64)
        out[k] = KeyStats(min=x.min(0), max=x.max(0), mean=x.mean(0), std=x.std(0), count=int(x.shape[0]))
    return out


def load_offline(paths: list[str], capacity: int) -> tuple[ReplayBuffer, list[str], str, PolicySpec, dict]:
    keys, task, first = check_stores(paths)
    replay, _ = ReplayBuffer.from_stores(paths, keys, capacity, reward_fn=shifted_reward)
    stats = stats_of(replay.offline, keys)
    return replay, keys, task, make_spec(first, keys, stats), stats


def make_learner(cfg: O2OConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> IQLLearner | FamO2OLearner:
    policy = build_policy(
        cfg.policy["type"], {k: v for k, v in cfg.policy.items() if k != "type"}, spec, stats
    )
    if cfg.algo == "iql":
        return IQLLearner(cfg.iql, policy, cfg.steps, cfg.device)
    return FamO2OLearner(cfg.iql, cfg.balance, policy, cfg.steps, cfg.device)


# ---------------------------------------------------------------------------------------------------- offline
def train_offline(
    cfg: O2OConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    run = Path(out)
    if (run / "config.yaml").exists() and not resume:
        raise RobostackError(
            f"{run}: a run already exists here (pass --resume to continue it, or another --out)"
        )
    replay, keys, task, spec, stats = load_offline(cfg.data.paths, 1)  # offline rows only: no online ring
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 5])
    learner = make_learner(cfg, spec, stats)
    start = load_train_state(run, learner.state_objects(), rng) if resume else 0
    if not resume:
        write_run_files(run, cfg, {"stores": cfg.data.paths, "transitions": len(replay)})
    eval_task = task if task in task_names() else ""
    log = RunLog(run, True, cfg.steps, start, f"train {cfg.algo}", progress)
    if start == 0:
        succ = float(np.mean(replay.offline["reward"] > REWARD_SHIFT)) if len(replay) else 0.0
        log.log({"step": 0, "transitions": len(replay), "success_transitions": succ})
    folder = None
    try:
        t0 = time.perf_counter()
        for step in range(start + 1, cfg.steps + 1):
            metrics = learner.update(
                to_tensors(replay.sample(cfg.iql.batch_size, rng), learner.critics.device)
            )
            log.bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.log(
                    {"step": step, **metrics, "updates_per_s": (step - start) / (time.perf_counter() - t0)}
                )
            if step % cfg.save_every == 0 or step == cfg.steps:
                folder = save_learner(run, step, learner, stats, rng, cfg)
                last = step == cfg.steps
                if (
                    eval_task
                    and cfg.eval_episodes
                    and (last or (cfg.eval_every and step % cfg.eval_every == 0))
                ):
                    res = evaluate_checkpoint(folder, eval_task, cfg.eval_episodes, cfg.eval_workers,
                                              RANGES["train-eval"].start)  # fmt: skip
                    log.log({"step": step, "eval_success_rate": res["success_rate"]})
        if folder is None and cfg.steps == 0:
            folder = save_learner(run, 0, learner, stats, rng, cfg)
    finally:
        log.close()
    if cfg.online.task and cfg.online.env_steps:
        online = O2OFinetuneConfig(
            algo=cfg.algo, from_run=str(run), task=cfg.online.task, env_steps=cfg.online.env_steps,
            envs=cfg.online.envs, workers=cfg.online.workers, seed=cfg.seed,
            updates_per_env_step=cfg.online.updates_per_env_step, replay_capacity=cfg.online.replay_capacity,
            eval_every=cfg.online.eval_every, eval_episodes=cfg.eval_episodes, eval_workers=cfg.eval_workers,
            device=cfg.device, log_every=cfg.log_every,
        )  # fmt: skip
        finetune_online(online, run / "online", progress=progress)
    return run


@register_algorithm(
    "iql", "train", IQLTrainConfig, "IQL offline (optionally then online) on stores with rewards"
)
def train_iql(
    cfg: O2OConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    return train_offline(cfg, out, resume, progress)


@register_algorithm(
    "famo2o",
    "train",
    FamO2OTrainConfig,
    "FamO2O on IQL: universal policy + balance model, offline (then online)",
)
def train_famo2o(
    cfg: O2OConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    return train_offline(cfg, out, resume, progress)


# ---------------------------------------------------------------------------------------------------- online
def load_offline_run(run_dir: str, algo: str, device: str) -> tuple[O2OConfig, Any, ReplayBuffer, dict, int]:
    """The offline run's config, learner (every network and optimiser restored), replay (its data) and statistics."""
    path = Path(run_dir)
    saved = load_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else {}
    if saved.get("algo") not in FAMILY:
        raise RobostackError(f"{run_dir}: not an offline `robostack train --algo iql|famo2o` run")
    if saved["algo"] != algo:
        raise RobostackError(f"{run_dir}: a {saved['algo']} run; fine-tune it with --algo {saved['algo']}")
    cfg = from_dict(O2OConfig, saved)
    cfg.device = device
    folder = resolve_policy_folder(path)
    policy = load_policy(folder)
    from robostack.data.normalize import load_stats

    stats = load_stats(folder)
    replay, _, _, _, _ = load_offline(cfg.data.paths, 1)
    learner = make_learner(cfg, policy.spec, stats)
    rng = np.random.default_rng(0)
    step = load_train_state(path, learner.state_objects(), rng)
    return cfg, learner, replay, stats, step


def finetune_online(cfg: O2OFinetuneConfig, out: str | os.PathLike[str], progress: bool = True) -> Path:
    run = Path(out)
    if (run / "config.yaml").exists():
        raise RobostackError(f"{run}: a run already exists here (choose another --out)")
    offline_cfg, learner, offline, stats, offline_step = load_offline_run(cfg.from_run, cfg.algo, cfg.device)
    spec = task_spec(cfg.task)
    check_fits(learner.actor.spec, spec)
    replay = ReplayBuffer({k: v[:1] for k, v in offline.offline.items()}, cfg.replay_capacity)
    replay.offline = offline.offline
    learner.online = True
    # IQL fine-tunes without learning-rate decay: the offline cosine schedule ended at zero, so the actor restarts
    # from its base rate (left at zero, the actor would never move online)
    for group in learner.actor_opt.param_groups:
        group["lr"] = offline_cfg.iql.actor_lr
    keys = learner.critics.keys
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 9])
    write_run_files(run, cfg, {"from": cfg.from_run, "offline_steps": offline_step})
    writer = EpisodeWriter.create(run / "online.zarr", online_store_info(spec, cfg.task))
    episodes = EpisodeRows(writer, cfg.envs, cfg.task, spec.control_rate_hz)
    log = RunLog(run, True, cfg.env_steps, 0, f"finetune {cfg.algo}", progress)
    env = VectorEnv(cfg.task, cfg.envs, ONLINE_SEEDS + cfg.seed * 100_000, cfg.workers)
    folder = save_learner(run, 0, learner, stats, rng, cfg)
    if cfg.eval_episodes:
        res = evaluate_checkpoint(
            folder, cfg.task, cfg.eval_episodes, cfg.eval_workers, RANGES["train-eval"].start
        )
        log.log({"step": 0, "eval_success_rate": res["success_rate"]})
    steps, owed, finished, seeds = 0, 0.0, [], np.zeros(cfg.envs, np.int64)
    next_log, next_eval = cfg.log_every, cfg.eval_every
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        obs = env.reset()
        while steps < cfg.env_steps:
            with torch.no_grad():
                a = learner.act(to_tensors({k: obs[k] for k in keys}, learner.critics.device))
                raw = learner.actor.normalizer.unnormalize("action", a).cpu().numpy()
            action = np.clip(raw, spec.action_low, spec.action_high).astype(np.float32)
            step = env.step(action)
            batch = {**{k: obs[k] for k in keys}, **{"next/" + k: step.final_obs[k] for k in keys},
                     "action": action, "reward": step.reward.astype(np.float32) + REWARD_SHIFT,
                     "terminated": step.terminated, "truncated": step.truncated,
                     "is_intervention": np.zeros(cfg.envs, bool),
                     "source": np.full(cfg.envs, SOURCES.index("sim"), np.uint8)}  # fmt: skip
            replay.add({k: np.asarray(batch[k]) for k in replay.keys})
            for i in range(cfg.envs):
                episodes.add(i, {**{k: obs[k][i] for k in keys}, "action": action[i], "policy_action": action[i],
                                 "reward": np.float32(step.reward[i]), "terminated": step.terminated[i],
                                 "truncated": step.truncated[i], "is_intervention": np.False_})  # fmt: skip
                if step.done[i]:
                    episodes.finish(i, bool(step.success[i]), int(step.episode_seed[i]))
                    finished.append(bool(step.success[i]))
            seeds = np.where(step.done, step.episode_seed + cfg.envs, step.episode_seed)
            obs = step.obs
            steps += cfg.envs
            owed += cfg.envs * cfg.updates_per_env_step
            while owed >= 1.0:
                b = to_tensors(replay.sample(offline_cfg.iql.batch_size, rng), learner.critics.device)
                metrics = learner.update(b)
                owed -= 1.0
            log.bar.update(cfg.envs)
            if steps >= next_log:
                next_log += cfg.log_every
                rec = {"step": steps, **metrics, "env_steps_per_s": steps / (time.perf_counter() - t0)}
                if finished:
                    rec["episode_success_rate"] = float(np.mean(finished[-50:]))
                log.log(rec)
            if cfg.eval_every and steps >= next_eval and steps < cfg.env_steps:
                next_eval += cfg.eval_every
                folder = save_learner(run, steps, learner, stats, rng, cfg)
                if cfg.eval_episodes:
                    res = evaluate_checkpoint(folder, cfg.task, cfg.eval_episodes, cfg.eval_workers,
                                              RANGES["train-eval"].start)  # fmt: skip
                    log.log({"step": steps, "eval_success_rate": res["success_rate"]})
        folder = save_learner(run, steps, learner, stats, rng, cfg)
        if cfg.eval_episodes:
            res = evaluate_checkpoint(
                folder, cfg.task, cfg.eval_episodes, cfg.eval_workers, RANGES["train-eval"].start
            )
            log.log({"step": steps, "eval_success_rate": res["success_rate"]})
        episodes.flush(seeds)
    finally:
        env.close()
        writer.close()
        log.close()
    return run


@register_algorithm("iql", "finetune", O2OFinetuneConfig, "IQL online from an offline iql run")
@register_algorithm("famo2o", "finetune", O2OFinetuneConfig, "FamO2O online from an offline famo2o run")
def finetune(
    cfg: O2OFinetuneConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    if resume:
        raise RobostackError(
            "online fine-tuning starts fresh (its episodes are in online.zarr); use another --out"
        )
    return finetune_online(cfg, out, progress)
