"""HG-DAgger (Kelly et al., 2019): RLIF's baseline. The policy acts (its mean action), the same simulated intervener
lets the same degraded expert take over, and the expert's actions during takeovers are aggregated with the original
demonstrations; behaviour cloning is retrained on the aggregate after every round.

Round k: ``env_steps_per_round`` steps in N copies -> takeover segments appended to ``<out>/aggregate.zarr`` (one
episode per contiguous takeover, the expert's action as the label) and every step to ``<out>/online.zarr`` ->
``robostack train`` (the starting run's own recipe, ``bc_steps`` steps) on the aggregate into ``<out>/round_k`` ->
the next round's policy. What ships is the last round's policy, linked as ``<out>/checkpoints``' last.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robostack.algos.bc import train as train_bc
from robostack.algos.interventions import Intervener
from robostack.algos.online_data import (
    ONLINE_SEEDS,
    EpisodeRows,
    OnlineRunConfig,
    action_scale,
    check_fits,
    online_store_info,
)
from robostack.algos.registry import register_algorithm
from robostack.config import from_dict, load_yaml
from robostack.data.buffer import EpisodeFilter, load_buffer
from robostack.data.schema import StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import RobostackError
from robostack.eval.seeds import RANGES
from robostack.policies.checkpoint import load_policy
from robostack.policies.loading import resolve_policy_folder
from robostack.sim.registry import task_spec
from robostack.sim.vector_env import VectorEnv
from robostack.train.config import TrainConfig
from robostack.train.hooks import evaluate_checkpoint
from robostack.train.run_log import RunLog, write_run_files
from robostack.train.state import checkpoint_folder, mark_last


@dataclass
class HGDaggerConfig(OnlineRunConfig):
    algo: str = "hg-dagger"
    rounds: int = 5
    """Rounds of rollouts and retraining; ``env_steps`` is split evenly over them."""
    bc_steps: int = 0
    """Behaviour-cloning steps of each round's retraining (the starting run's recipe otherwise); 0: the starting
    run's own steps, so each round's policy is trained as long as the start was."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.intervener.rule == "value":
            raise RobostackError("hg-dagger uses the deviation or random intervener")
        if self.rounds < 1 or self.env_steps < self.rounds * self.envs:
            raise RobostackError(
                f"need rounds >= 1 and env_steps >= rounds x envs ({self.rounds * self.envs})"
            )


def _append_session_takeovers(writer: EpisodeWriter, sessions: list[str], keys: list[str]) -> int:
    """Every contiguous takeover of the recorded sessions as one episode of the aggregate (the human's action as
    the label); returns how many."""
    n = 0
    for path in sessions:
        store = EpisodeStore(path)
        if "is_intervention" not in store.keys:
            raise RobostackError(f"{path}: no is_intervention key (not a session with takeovers)")
        buf = load_buffer(path, [*keys, "action", "is_intervention"])
        for i, meta in enumerate(buf.episodes):
            ep = buf.episode(i)
            flags = ep["is_intervention"].astype(bool)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
            for start, stop in zip(edges[::2], edges[1::2], strict=True):
                writer.add_episode({k: ep[k][start:stop] for k in [*keys, "action"]}, success=True,
                                   source="intervention", task=meta.task, quality="human")  # fmt: skip
                n += 1
    if n == 0:
        raise RobostackError("--algo hg-dagger: the --data sessions hold no takeovers to learn from")
    return n


def _from_sessions(cfg: HGDaggerConfig, run: Path, source: Path, keys: list[str], progress: bool) -> Path:
    """The robot-data form: one round on the recorded sessions' takeovers, no simulator."""
    with EpisodeWriter.open(run / "aggregate.zarr") as w:
        segments = _append_session_takeovers(w, cfg.data, keys)
    recipe = _bc_recipe(source, run / "aggregate.zarr", cfg, 0)
    round_run = train_bc(recipe, run / "round_0", progress=progress)
    final = checkpoint_folder(run, recipe.steps)
    shutil.copytree(resolve_policy_folder(round_run), final, ignore=shutil.ignore_patterns("train_state.pt"))
    mark_last(run, final)
    with RunLog(run, True, 1, 0, "hg-dagger (recorded sessions)", False) as log:
        log.log({"step": recipe.steps, "takeover_segments": segments})
    return run


def _bc_recipe(run: Path, data: Path, cfg: HGDaggerConfig, round_index: int) -> TrainConfig:
    saved = load_yaml(run / "config.yaml")
    saved["data"] = {**saved.get("data", {}), "path": str(data), "success_only": True, "max_episodes": None}
    saved.update(steps=cfg.bc_steps or saved["steps"], seed=cfg.seed + round_index, device=cfg.device)
    saved["eval"] = {**saved.get("eval", {}), "episodes": 0}
    return from_dict(TrainConfig, saved)


def _start_aggregate(path: Path, source_run: Path, keys: list[str]) -> None:
    """The original demonstrations (the keys BC needs, successful episodes) as the aggregate's first episodes."""
    store = EpisodeStore(Path(load_yaml(source_run / "config.yaml")["data"]["path"]))
    feats = {k: store.info.features[k] for k in [*keys, "action"]}
    info = StoreInfo(control_rate_hz=store.info.control_rate_hz, features=feats, tasks=store.info.tasks,
                     extra={"task_spec": store.info.extra.get("task_spec", {})})  # fmt: skip
    buf = load_buffer(store.path, [*keys, "action"], EpisodeFilter(success=True))
    with EpisodeWriter.create(path, info) as w:
        for i, meta in enumerate(buf.episodes):
            w.add_episode(buf.episode(i), success=True, source=meta.source, task=meta.task, seed=meta.seed,
                          quality=meta.quality)  # fmt: skip


@torch.no_grad()
def _round(cfg: HGDaggerConfig, policy_dir: Path, steps: int, k: int, writers: tuple, log: RunLog) -> dict:
    """One round of rollouts with takeovers; returns its counts."""
    online, aggregate = writers
    policy = load_policy(policy_dir, cfg.device).eval()
    keys = list(policy.spec.obs)
    spec = task_spec(cfg.task)
    iv = Intervener(cfg.intervener, cfg.envs, np.random.default_rng([cfg.seed, 11, k]))
    scale = action_scale(spec)
    segments: list[dict[str, list]] = [{} for _ in range(cfg.envs)]
    counts = {"steps": 0, "takeover_steps": 0, "segments": 0, "episodes": 0, "successes": 0}
    seed = ONLINE_SEEDS + cfg.seed * 100_000 + k * 10_000
    with VectorEnv(cfg.task, cfg.envs, seed, cfg.workers, expert_level=cfg.expert_level) as env:
        obs = env.reset()
        running = np.arange(seed, seed + cfg.envs)
        while counts["steps"] < steps:
            proposal = policy.predict_chunk({k2: torch.as_tensor(obs[k2][:, None]) for k2 in keys})[
                :, 0
            ].numpy()
            expert, intent = env.expert_decisions()
            acting = iv.decide(obs, proposal, expert, scale, intent)
            executed = np.where(acting[:, None], expert, proposal).astype(np.float32)
            step = env.step(executed)
            for i in range(cfg.envs):
                row = {**{k2: obs[k2][i] for k2 in keys}, "action": executed[i], "policy_action": proposal[i],
                       "reward": np.float32(step.reward[i]), "terminated": step.terminated[i],
                       "truncated": step.truncated[i], "is_intervention": acting[i]}  # fmt: skip
                online.add(i, row)
                if acting[i]:
                    for k2 in [*keys, "action"]:
                        segments[i].setdefault(k2, []).append(row[k2])
                if segments[i] and (not acting[i] or step.done[i]):
                    aggregate.add_episode({k2: np.stack(v) for k2, v in segments[i].items()}, success=True,
                                          source="intervention", task=cfg.task, quality="human")  # fmt: skip
                    segments[i] = {}
                    counts["segments"] += 1
                if step.done[i]:
                    online.finish(i, bool(step.success[i]), int(step.episode_seed[i]))
                    counts["episodes"] += 1
                    counts["successes"] += int(step.success[i])
            iv.episode_done(step.done)
            running = np.where(step.done, step.episode_seed + cfg.envs, step.episode_seed)
            counts["steps"] += cfg.envs
            counts["takeover_steps"] += int(acting.sum())
            log.bar.update(cfg.envs)
            obs = step.obs
        online.flush(running)
    return counts


@register_algorithm(
    "hg-dagger", "finetune", HGDaggerConfig, "HG-DAgger: retrain behaviour cloning on the expert's takeovers"
)
def finetune(
    cfg: HGDaggerConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    if resume:
        raise RobostackError("hg-dagger starts fresh (its data are in aggregate.zarr); use another --out")
    run = Path(out)
    if (run / "config.yaml").exists():
        raise RobostackError(f"{run}: a run already exists here (choose another --out)")
    source = Path(cfg.from_run)
    if not (source / "config.yaml").is_file():
        raise RobostackError(
            f"{source}: hg-dagger starts from a behaviour-cloning run folder (with its config.yaml)"
        )
    policy_dir = resolve_policy_folder(source)
    start = load_policy(policy_dir)
    if cfg.task:
        check_fits(start.spec, task_spec(cfg.task))
    if start.config.n_obs_steps != 1 or start.config.n_action_steps != 1:
        raise RobostackError("hg-dagger retrains single-step policies (n_obs_steps 1, n_action_steps 1)")
    keys = list(start.spec.obs)
    write_run_files(run, cfg, None)
    _start_aggregate(run / "aggregate.zarr", source, keys)
    if not cfg.task:
        return _from_sessions(cfg, run, source, keys, progress)
    log = RunLog(run, True, cfg.env_steps, 0, "finetune hg-dagger", progress)
    per_round = cfg.env_steps // cfg.rounds
    steps_done = 0
    try:
        with EpisodeWriter.create(run / "online.zarr", online_store_info(task_spec(cfg.task), cfg.task)) as w_online, \
                EpisodeWriter.open(run / "aggregate.zarr") as w_agg:  # fmt: skip
            rows = EpisodeRows(w_online, cfg.envs, cfg.task, task_spec(cfg.task).control_rate_hz)
            for k in range(cfg.rounds):
                counts = _round(cfg, policy_dir, per_round, k, (rows, w_agg), log)
                steps_done += counts["steps"]
                round_run = train_bc(
                    _bc_recipe(source, run / "aggregate.zarr", cfg, k), run / f"round_{k}", progress=False
                )
                policy_dir = resolve_policy_folder(round_run)
                log.log({"step": steps_done, "round": k + 1, "intervention_rate": counts["takeover_steps"] / counts["steps"],
                         "segments": counts["segments"], "episode_success_rate":
                         counts["successes"] / max(1, counts["episodes"])})  # fmt: skip
                if cfg.eval_episodes > 0:  # each round's policy without interventions: the learning curve
                    result = evaluate_checkpoint(
                        policy_dir, cfg.task, cfg.eval_episodes, 1, RANGES["train-eval"].start
                    )
                    log.log({"step": steps_done, "eval_success_rate": result["success_rate"]})
        final = checkpoint_folder(run, steps_done)
        shutil.copytree(policy_dir, final, ignore=shutil.ignore_patterns("train_state.pt"))
        mark_last(run, final)
    finally:
        log.close()
    return run
