"""RLIF (Luo et al., ICLR 2024) and plain SAC fine-tuning, online in simulation.

A behaviour-cloned single-step Gaussian policy acts in N simulated copies of the task; a simulated intervener
watches each copy and lets a (degraded) expert take over. ``rlif``'s reward is the interventions alone: -1 on the
transition just before a takeover starts (``algos.interventions``), 0 elsewhere, never the task's reward. ``sac``
learns from the task's reward with no intervener: the baseline that shows what the task reward alone gives.
Every transition (the expert's steps during takeovers included, flagged ``is_intervention``) goes into the replay
buffer with RLPD's symmetric sampling against the offline stores given with ``data``, and every finished episode into
``<out>/online.zarr``. The learner is ``algos.sac.SACLearner``; what ships is ``<out>/checkpoints/step_N/``, a
gaussian policy folder that ``robostack eval`` / ``export`` and the ROS node take unchanged.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.interventions import Intervener, intervention_rewards
from robostack.algos.online_data import (
    ONLINE_SEEDS,
    EpisodeRows,
    OnlineRunConfig,
    action_scale,
    check_fits,
    online_store_info,
)
from robostack.algos.registry import register_algorithm
from robostack.algos.sac import SACConfig, SACLearner, check_actor
from robostack.data.normalize import load_stats
from robostack.data.replay import ReplayBuffer
from robostack.data.schema import SOURCES
from robostack.data.store import EpisodeWriter
from robostack.errors import RobostackError
from robostack.eval.seeds import RANGES
from robostack.policies.checkpoint import load_policy, save_policy
from robostack.policies.loading import LAST, resolve_policy_folder
from robostack.sim.registry import task_spec
from robostack.sim.vector_env import VectorEnv
from robostack.train.data import to_tensors
from robostack.train.hooks import evaluate_checkpoint
from robostack.train.run_log import RunLog, write_run_files
from robostack.train.state import checkpoint_folder, load_train_state, mark_last, save_train_state


@dataclass
class OnlineConfig(OnlineRunConfig):
    algo: str = "rlif"
    """rlif (reward from interventions) | sac (the task's reward, no intervener)."""
    reference: str = ""
    """The value intervener's judge: a ``sac`` fine-tuning run whose critic rates actions (RLIF's reference critic)."""
    sac: SACConfig = field(default_factory=SACConfig)
    updates_per_env_step: float = 1.0
    """Learner steps per environment step (each learner step runs ``sac.utd`` critic updates)."""
    learning_starts: int = 1000
    """Environment steps collected before the first update (when no offline data is given)."""
    updates: int = 10_000
    """Learner steps when learning from recorded sessions only (no ``task``)."""
    replay_capacity: int = 1_000_000
    eval_every: int = 5000
    log_every: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sac, dict):
            self.sac = SACConfig(**self.sac)
        if self.algo not in ("rlif", "sac"):
            raise RobostackError(f"unknown online algorithm '{self.algo}' (choose from rlif, sac)")


class _OnlineRun:
    """The loop's state: learner, replay, environments, intervener, recorder, counters."""

    def __init__(
        self, cfg: OnlineConfig, out: Path, progress: bool, saved: dict[str, Any] | None = None
    ) -> None:
        """``saved``: the last checkpoint's loop state (an exact ``--resume``), else a fresh run."""
        self.cfg, self.out = cfg, out
        folder = resolve_policy_folder(cfg.from_run)
        actor = load_policy(folder).train()
        check_actor(actor)
        self.spec = task_spec(cfg.task)
        check_fits(actor.spec, self.spec)
        self.stats = load_stats(folder)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng([cfg.seed, 7])
        self.learner = SACLearner(cfg.sac, actor, cfg.device)
        self.keys = list(actor.spec.obs)
        value_fn = reference_value_fn(cfg.reference, cfg.device) if cfg.reference else None
        self.intervener = (
            Intervener(cfg.intervener, cfg.envs, np.random.default_rng([cfg.seed, 11]), value_fn)
            if cfg.algo == "rlif"
            else None
        )
        self.replay = self._replay()
        self.action_scale = action_scale(self.spec)
        self.pending: list[dict[str, np.ndarray] | None] = [None] * cfg.envs
        self.was_acting = np.zeros(cfg.envs, bool)
        self.finished: list[tuple[bool, bool]] = []  # (success, had an intervention) of finished episodes
        self.intervened = np.zeros(cfg.envs, bool)  # the running episode has had a takeover
        self.steps, self.updates, self.owed = 0, 0, 0.0
        self.steps_at_start = 0
        self.window_steps, self.window_interventions = 0, 0
        self.running_seeds = np.zeros(cfg.envs, np.int64)
        # what holds resources last, once every check has passed; ``close`` releases them
        store = out / "online.zarr"
        if saved is None:
            self.writer = EpisodeWriter.create(store, online_store_info(self.spec, cfg.task))
        else:
            self.writer = EpisodeWriter.open(store)
        written = saved["episodes_written"] if saved else 0
        self.episodes = EpisodeRows(self.writer, cfg.envs, cfg.task, self.spec.control_rate_hz, written)
        start = saved["steps"] if saved else 0
        self.log = RunLog(out, True, cfg.env_steps, start, f"finetune {cfg.algo}", progress)
        self.env = VectorEnv(cfg.task, cfg.envs, ONLINE_SEEDS + cfg.seed * 100_000, cfg.workers,
                             expert_level=cfg.expert_level)  # fmt: skip

    def _replay(self) -> ReplayBuffer:
        if self.cfg.data:
            return offline_replay(self.cfg, self.keys)
        spec = self.spec
        example = {f"obs/{k}": np.zeros((0, *v.shape), np.float32) for k, v in spec.obs.items()}
        example.update({"next/" + k: v for k, v in example.items()})
        example.update(action=np.zeros((0, *spec.action.shape), np.float32), reward=np.zeros(0, np.float32),
                       terminated=np.zeros(0, bool), truncated=np.zeros(0, bool),
                       is_intervention=np.zeros(0, bool), source=np.zeros(0, np.uint8))  # fmt: skip
        return ReplayBuffer(example, self.cfg.replay_capacity)


def offline_replay(cfg: OnlineConfig, keys: list[str]) -> ReplayBuffer:
    """The ``data`` stores' transitions; rlif's reward from their interventions. Learning from recorded sessions only
    (no ``task``), stores without a takeover leave nothing to learn and are refused; in simulation they are prior data
    (RLPD's demonstrations, reward 0 throughout) beside the online takeovers."""
    reward_fn = (
        (lambda buf: intervention_rewards(_flags(buf), buf.episode_ends)) if cfg.algo == "rlif" else None
    )
    replay, _ = ReplayBuffer.from_stores(cfg.data, keys, cfg.replay_capacity, reward_fn=reward_fn)
    if cfg.algo == "rlif" and not cfg.task and not (replay.offline["reward"] < 0).any():
        raise RobostackError(
            "--algo rlif: the --data stores hold no interventions (no takeover to learn from)"
        )
    return replay


def reference_value_fn(run: str, device: str) -> Any:
    """Q_ref(s, a) from a finished ``sac`` run: the mean of its critic ensemble, on raw observations and actions."""
    from robostack.config import from_dict, load_yaml

    folder = resolve_policy_folder(run)
    saved = load_yaml(Path(run) / "config.yaml") if (Path(run) / "config.yaml").is_file() else {}
    if saved.get("algo") != "sac":
        raise RobostackError(f"{run}: the reference critic comes from a `robostack finetune --algo sac` run")
    learner = SACLearner(from_dict(OnlineConfig, saved).sac, load_policy(folder), device)
    state = torch.load(folder / "train_state.pt", map_location=device, weights_only=False)
    learner.critic.load_state_dict(state["critic"])
    learner.critic.eval()

    @torch.no_grad()
    def value(obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        t = to_tensors({k: obs[k] for k in learner.keys}, learner.device)
        a = learner.normalized_action(torch.as_tensor(actions, device=learner.device))
        return learner.critic(learner.features(t), a).mean(0).cpu().numpy()

    return value


def _flags(buf: Any) -> np.ndarray:
    if "is_intervention" not in buf.data:
        raise RobostackError("--algo rlif: a --data store has no is_intervention key")
    return buf.data["is_intervention"]


def _act(run: _OnlineRun, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The policy's sampled action in raw units (B, Da)."""
    return run.learner.raw_action(obs, run.env.spec.action_low, run.env.spec.action_high)


def _collect(run: _OnlineRun, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One vector step: act, let the intervener decide, step, hand transitions to the replay and the store."""
    policy_action = _act(run, obs)
    expert_action, intent = run.env.expert_decisions()
    acting = np.zeros(run.cfg.envs, bool)
    if run.intervener is not None:
        acting = run.intervener.decide(obs, policy_action, expert_action, run.action_scale, intent)
    executed = np.where(acting[:, None], expert_action, policy_action).astype(np.float32)
    # RLIF: the transition just before an onset (same episode) is penalised; it waits in ``pending`` one step
    onset = acting & ~run.was_acting
    ready = []
    for i, tr in enumerate(run.pending):
        if tr is not None:
            if onset[i]:
                tr["reward"] = np.float32(-1.0)
            ready.append(tr)
            run.pending[i] = None
    step = run.env.step(executed)
    for i in range(run.cfg.envs):
        reward = np.float32(step.reward[i]) if run.cfg.algo == "sac" else np.float32(0.0)
        tr = {**{k: obs[k][i] for k in run.keys}, **{"next/" + k: step.final_obs[k][i] for k in run.keys},
              "action": executed[i], "reward": reward, "terminated": step.terminated[i],
              "truncated": step.truncated[i], "is_intervention": acting[i],
              "source": np.uint8(SOURCES.index("intervention" if acting[i] else "sim"))}  # fmt: skip
        row = {**{k: obs[k][i] for k in run.keys}, "action": executed[i], "policy_action": policy_action[i],
               "reward": np.float32(step.reward[i]), "terminated": step.terminated[i],
               "truncated": step.truncated[i], "is_intervention": acting[i]}  # fmt: skip
        run.episodes.add(i, row)
        run.intervened[i] |= bool(acting[i])
        if step.done[i]:  # a takeover in the next episode was not caused by this one's last step
            ready.append(tr)
            run.episodes.finish(i, bool(step.success[i]), int(step.episode_seed[i]))
            run.finished.append((bool(step.success[i]), bool(run.intervened[i])))
            run.intervened[i] = False
        else:
            run.pending[i] = tr
    # a copy that reset now runs its next episode, whose seed is N above the finished one's
    run.running_seeds = np.where(step.done, step.episode_seed + run.cfg.envs, step.episode_seed)
    run.was_acting = acting & ~step.done
    if run.intervener is not None:
        run.intervener.episode_done(step.done)
    if ready:
        run.replay.add({k: np.stack([tr[k] for tr in ready]) for k in ready[0]})
    run.steps += run.cfg.envs
    run.window_steps += run.cfg.envs
    run.window_interventions += int(acting.sum())
    return step.obs


def _learn(run: _OnlineRun) -> dict[str, float]:
    cfg = run.cfg
    if len(run.replay) < cfg.sac.batch_size or (not cfg.data and run.steps < cfg.learning_starts):
        return {}
    run.owed += cfg.envs * cfg.updates_per_env_step
    metrics: dict[str, float] = {}
    while run.owed >= 1.0:
        batches = [to_tensors(run.replay.sample_symmetric(cfg.sac.batch_size, run.rng), run.learner.device)
                   for _ in range(cfg.sac.utd)]  # fmt: skip
        metrics = run.learner.update(batches)
        run.updates += 1
        run.owed -= 1.0
    return metrics


def _checkpoint(run: _OnlineRun, obs: dict[str, np.ndarray], marks: tuple[int, int]) -> dict[str, Any]:
    """The actor and the learner's state, its evaluation, then the loop's state (``--resume`` continues from there
    exactly); ``last`` moves to it once all of it is written."""
    folder = save_learner(run.out, run.steps, run.learner, run.stats, run.rng, run.cfg, mark=False)
    result: dict[str, Any] = {}
    if run.cfg.eval_episodes > 0:
        result = evaluate_checkpoint(
            folder, run.cfg.task, run.cfg.eval_episodes, 1, RANGES["train-eval"].start
        )
        run.log.log({"step": run.steps, "eval_success_rate": result["success_rate"]})
    save_loop_state(run, obs, marks, folder)
    mark_last(run.out, folder)
    return result


ONLINE_STATE = "online_state.pkl"


def save_loop_state(
    run: _OnlineRun, obs: dict[str, np.ndarray], marks: tuple[int, int], folder: Path
) -> None:
    """Everything besides the networks that the next environment step depends on: every copy's simulator and
    expert, the observations, transitions waiting for their reward, unfinished episodes, the online replay, the
    intervener, the counters and the random streams as they are after the checkpoint's evaluation."""
    iv = run.intervener
    state = {
        "env": run.env.snapshot(), "obs": obs, "pending": run.pending, "was_acting": run.was_acting,
        "intervened": run.intervened, "finished": run.finished, "steps": run.steps, "updates": run.updates,
        "owed": run.owed, "window": (run.window_steps, run.window_interventions), "running_seeds": run.running_seeds,
        "intervener": None if iv is None else (iv.rng.bit_generator.state, iv.left, iv.straying),
        "rows": run.episodes.rows, "episodes_written": run.episodes.index, "replay": run.replay.online_state(),
        "marks": marks, "numpy_rng": run.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
    }  # fmt: skip
    tmp = folder / (ONLINE_STATE + ".partial")
    with tmp.open("wb") as f:
        pickle.dump(state, f)
    os.replace(tmp, folder / ONLINE_STATE)


def load_loop_state(run_dir: Path) -> dict[str, Any]:
    last = run_dir / "checkpoints" / LAST
    path = run_dir / "checkpoints" / last.read_text().strip() / ONLINE_STATE if last.is_file() else None
    if path is None or not path.is_file():
        raise RobostackError(f"{run_dir}: nothing to resume (no checkpoint with the online loop's state)")
    with path.open("rb") as f:
        return pickle.load(f)


def restore_loop_state(run: _OnlineRun, saved: dict[str, Any]) -> dict[str, np.ndarray]:
    """Put ``save_loop_state``'s state back (the learner's networks and optimisers are loaded beside it)."""
    load_train_state(run.out, run.learner.state_objects(), run.rng)
    run.env.restore(saved["env"])
    run.pending, run.was_acting, run.intervened = saved["pending"], saved["was_acting"], saved["intervened"]
    run.finished, run.steps, run.updates, run.owed = (
        saved["finished"],
        saved["steps"],
        saved["updates"],
        saved["owed"],
    )
    run.window_steps, run.window_interventions = saved["window"]
    run.running_seeds = saved["running_seeds"]
    if run.intervener is not None:
        rng_state, run.intervener.left, run.intervener.straying = saved["intervener"]
        run.intervener.rng.bit_generator.state = rng_state
    run.episodes.rows = saved["rows"]
    run.replay.load_online_state(saved["replay"])
    run.rng.bit_generator.state = saved["numpy_rng"]
    torch.set_rng_state(saved["torch_rng"])
    return saved["obs"]


def save_learner(
    out: Path,
    step: int,
    learner: SACLearner,
    stats: Any,
    rng: np.random.Generator,
    cfg: Any,
    mark: bool = True,
) -> Path:
    """The actor as a policy folder, with the learner's whole state beside it; ``last`` moves to it (``mark``)."""
    folder = checkpoint_folder(out, step)
    save_policy(learner.actor, folder, stats, {"step": step, "train_config": asdict(cfg)})
    save_train_state(folder, step, learner.state_objects(), rng)
    if mark:
        mark_last(out, folder)
    return folder


def learn_from_sessions(cfg: OnlineConfig, out: Path, progress: bool) -> Path:
    """The robot-data form: ``updates`` learner steps on the recorded sessions alone, no simulator."""
    folder = resolve_policy_folder(cfg.from_run)
    actor = load_policy(folder).train()
    check_actor(actor)
    keys = list(actor.spec.obs)
    replay = offline_replay(cfg, keys)
    for k in [*keys, "action"]:
        want = tuple(actor.spec.obs[k].shape) if k != "action" else tuple(actor.spec.action.shape)
        if tuple(replay.offline[k].shape[1:]) != want:
            raise RobostackError(
                f"the sessions' '{k}' is {tuple(replay.offline[k].shape[1:])}, the policy's {want}"
            )
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 7])
    learner = SACLearner(cfg.sac, actor, cfg.device)
    log = RunLog(out, True, cfg.updates, 0, f"finetune {cfg.algo} (recorded sessions)", progress)
    log.log(
        {"step": 0, "transitions": len(replay), "takeover_onsets": int((replay.offline["reward"] < 0).sum())}
    )
    try:
        for u in range(cfg.updates):
            batches = [
                to_tensors(replay.sample(cfg.sac.batch_size, rng), learner.device) for _ in range(cfg.sac.utd)
            ]
            metrics = learner.update(batches)
            log.bar.update(1)
            if (u + 1) % cfg.log_every == 0 or u + 1 == cfg.updates:
                log.log({"step": u + 1, **metrics})
        save_learner(out, cfg.updates, learner, load_stats(folder), rng, cfg)
    finally:
        log.close()
    return out


@register_algorithm(
    "rlif", "finetune", OnlineConfig, "RLIF: off-policy RL whose only reward is the intervener's takeovers"
)
@register_algorithm("sac", "finetune", OnlineConfig, "SAC with RLPD's recipe on the task's reward")
def finetune(
    cfg: OnlineConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    """Fine-tune ``cfg.from_run`` online; returns the run folder (its last checkpoint is the fine-tuned policy).
    ``resume``: continue a killed run from its last checkpoint exactly as the uninterrupted run would have gone on
    (same actions, takeovers, updates and recorded episodes)."""
    run_dir = Path(out)
    if resume:
        if not cfg.task:
            raise RobostackError("learning from recorded sessions starts fresh; use another --out")
        saved = load_loop_state(run_dir)
        if saved["steps"] >= cfg.env_steps:
            raise RobostackError(
                f"{run_dir}: the run finished ({saved['steps']} environment steps); fine-tune further with "
                f"--from {run_dir} and another --out"
            )
    else:
        if (run_dir / "config.yaml").exists():
            raise RobostackError(
                f"{run_dir}: a run already exists here (pass --resume to continue it, or another --out)"
            )
        write_run_files(run_dir, cfg, None)
        if not cfg.task:
            return learn_from_sessions(cfg, run_dir, progress)
        saved = None
    run = _OnlineRun(cfg, run_dir, progress, saved)
    t0 = time.perf_counter()
    try:
        if saved is None:
            obs = run.env.reset()
            next_log, next_eval = cfg.log_every, cfg.eval_every
        else:
            obs = restore_loop_state(run, saved)
            next_log, next_eval = saved["marks"]
        run.steps_at_start = run.steps  # the rate counts this process's steps
        while run.steps < cfg.env_steps:
            obs = _collect(run, obs)
            metrics = _learn(run)
            run.log.bar.update(cfg.envs)
            if run.steps >= next_log:
                next_log += cfg.log_every
                run.log.log(_record(run, metrics, time.perf_counter() - t0))
            if cfg.eval_every and run.steps >= next_eval and run.steps < cfg.env_steps:
                next_eval += cfg.eval_every
                _checkpoint(run, obs, (next_log, next_eval))
        _checkpoint(run, obs, (next_log, next_eval))
        run.episodes.flush(run.running_seeds)
    finally:
        run.env.close()
        run.writer.close()
        run.log.close()
    return run_dir


def _record(run: _OnlineRun, metrics: dict[str, float], seconds: float) -> dict[str, Any]:
    recent = run.finished[-50:]
    rec: dict[str, Any] = {"step": run.steps, "updates": run.updates, "env_steps_per_s": (run.steps - run.steps_at_start) / seconds,
                           "episodes": len(run.finished), **metrics}  # fmt: skip
    if recent:
        rec["episode_success_rate"] = float(np.mean([s for s, _ in recent]))
        rec["episodes_with_takeover"] = float(np.mean([t for _, t in recent]))
    if run.window_steps:
        rec["intervention_rate"] = (
            run.window_interventions / run.window_steps
        )  # share of steps under takeover
    run.window_steps, run.window_interventions = 0, 0
    return rec
