"""On-policy rollouts of chunk policies in the vector environment: what DPPO and Gaussian-PPO both collect.

Per decision, every copy's T_o-frame observation history goes through the learner in one batch
(``learner.act(obs, generator) -> (raw action chunks, the sample to score later, its log-likelihood)``), the chunks
run in the copies (``VectorEnv.step_chunk``), and the critic values the state before and after (the latter to
bootstrap a time limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.online_data import check_fits
from robostack.algos.ppo import explained_variance, gae, value_loss
from robostack.data.normalize import load_stats
from robostack.errors import RobostackError
from robostack.eval.seeds import RANGES
from robostack.policies.checkpoint import load_policy, save_policy
from robostack.policies.critics import VEnsemble
from robostack.policies.loading import resolve_policy_folder
from robostack.sim.registry import task_spec
from robostack.sim.vector_env import VectorEnv
from robostack.train.data import to_tensors
from robostack.train.hooks import evaluate_checkpoint
from robostack.train.run_log import RunLog, write_run_files
from robostack.train.state import checkpoint_folder, mark_last, save_train_state


@dataclass
class OnPolicyConfig:
    """What DPPO and Gaussian-PPO runs share."""

    algo: str = ""
    from_run: str = ""
    """Training run or policy folder of the behaviour-cloned policy to fine-tune."""
    task: str = "push"
    iterations: int = 50
    envs: int = 8
    workers: int = 0
    steps_per_iteration: int = 32
    """Decisions (action chunks) per copy per iteration."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    eval_every: int = 10
    """Iterations between checkpoints evaluated in simulation (and at the end)."""
    eval_episodes: int = 50
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.from_run:
            raise RobostackError("--from is required: the behaviour-cloned policy to fine-tune")
        if self.iterations < 1 or self.steps_per_iteration < 1 or self.envs < 1:
            raise RobostackError("iterations, steps_per_iteration and envs must be at least 1")


def state_features(normalizer: Any, keys: list[str], obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The critic's input: the latest frame of every low-dim key (of histories (B, T_o, ...) or single frames),
    normalised and flattened (B, F). DPPO's critic sees the environment state only."""
    return torch.cat(
        [
            normalizer.normalize(k, (obs[k][:, -1] if obs[k].dim() > 2 else obs[k]).float()).flatten(1)
            for k in keys
        ],
        dim=-1,
    )


class ChunkLearner:
    """What DPPO's and Gaussian-PPO's learners share: the critic on the environment state, the two optimisers, and
    the PPO update (GAE, epochs of shuffled minibatches, advantage normalisation per minibatch). A subclass gives
    ``act`` (for ``chunk_rollout``), ``old_logp`` (the stored log-likelihoods as the ratio compares them) and
    ``policy_loss`` (its clipped objective on a minibatch)."""

    def __init__(self, cfg: Any, policy: Any, actor_params: Any) -> None:
        if policy.spec.image_keys:
            raise RobostackError(f"{cfg.algo} here covers low-dim observations only")
        self.cfg, self.policy = cfg, policy
        self.keys = policy.spec.lowdim_keys
        width = sum(int(np.prod(policy.spec.obs[k].shape)) for k in self.keys)
        self.critic = VEnsemble(width, 1, cfg.critic_hidden).to(cfg.device)
        self.actor_opt = torch.optim.Adam(actor_params, lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)

    def state_objects(self) -> dict[str, Any]:
        return {
            "actor": self.policy,
            "critic": self.critic,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
        }

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """V of the environment state (B,)."""
        return self.critic(state_features(self.policy.normalizer, self.keys, obs))[0]

    def old_logp(self, logp: torch.Tensor) -> torch.Tensor:
        return logp

    def policy_loss(self, obs: dict, sample: torch.Tensor, old: torch.Tensor, adv: torch.Tensor) -> tuple:
        raise NotImplementedError

    def update(self, ro: Rollout, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = gae(ro.reward, ro.values, ro.terminated, ro.truncated, ro.final_values[-1], cfg.gamma,
                       cfg.gae_lambda, bootstrap_values=ro.final_values)  # fmt: skip
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 - (S, N, ...) -> (S*N, ...)
        obs = {k: flat(v) for k, v in ro.obs.items()}
        sample, old, adv, ret = flat(ro.sample), self.old_logp(flat(ro.logp)), flat(adv), flat(ret)
        metrics: dict[str, float] = {}
        for _ in range(cfg.epochs):
            for idx in np.array_split(rng.permutation(adv.shape[0]), max(1, adv.shape[0] // cfg.batch_size)):
                i = torch.as_tensor(idx)
                mb_obs = {k: v[i] for k, v in obs.items()}
                a = adv[i]
                a = (a - a.mean()) / (a.std() + 1e-8) if len(idx) > 1 else a
                p_loss, pm = self.policy_loss(mb_obs, sample[i], old[i], a)
                v_loss, vm = value_loss(self.value(mb_obs), ret[i])
                self.actor_opt.zero_grad(set_to_none=True)
                self.critic_opt.zero_grad(set_to_none=True)
                (p_loss + v_loss).backward()
                self.actor_opt.step()
                self.critic_opt.step()
                metrics = {k: float(v) for k, v in {**pm, **vm}.items()}
        metrics["explained_variance"] = explained_variance(flat(ro.values), ret)
        return metrics


@dataclass
class Rollout:
    """One iteration's decisions, (S, N, ...) per field."""

    obs: dict[str, torch.Tensor]
    sample: torch.Tensor
    """What the policy drew (DPPO: the denoising chain; Gaussian-PPO: the normalised action chunk)."""
    logp: torch.Tensor
    values: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_values: torch.Tensor
    successes: int = 0
    episodes: int = 0
    policy_s: float = 0.0
    """Seconds in the policy and critic (batched over the copies: one forward per denoising step)."""
    sim_s: float = 0.0
    """Seconds stepping the simulated copies."""
    env_steps: int = 0
    """Actions executed (a chunk cut by its episode's end executes fewer than T_a)."""


def chunk_rollout(
    env: VectorEnv,
    hist: dict[str, np.ndarray],
    decisions: int,
    learner: Any,
    gen: torch.Generator,
    device: str,
) -> tuple[Rollout, dict[str, np.ndarray]]:
    """``decisions`` chunks per copy from the histories ``hist``; returns the rollout and the histories after it."""
    dev = torch.device(device)
    rows: dict[str, list] = {
        k: [] for k in ("obs", "sample", "logp", "values", "reward", "term", "trunc", "final")
    }
    successes = episodes = 0
    t_o = learner.policy.config.n_obs_steps
    policy_s = sim_s = 0.0
    env_steps = 0
    for _ in range(decisions):
        t0 = time.perf_counter()
        obs = to_tensors({k: hist[k] for k in learner.policy.spec.obs}, dev)
        actions, sample, logp = learner.act(obs, gen)
        t1 = time.perf_counter()
        step = env.step_chunk(actions, history=t_o)
        t2 = time.perf_counter()
        with torch.no_grad():
            values = learner.value(obs)
            final_v = learner.value(to_tensors({k: step.final_obs[k] for k in learner.keys}, dev))
        policy_s += (t1 - t0) + (time.perf_counter() - t2)
        sim_s += t2 - t1
        env_steps += int(step.executed.sum())
        for k, v in (("obs", obs), ("sample", sample), ("logp", logp), ("values", values),
                     ("reward", torch.as_tensor(step.reward)), ("term", torch.as_tensor(step.terminated)),
                     ("trunc", torch.as_tensor(step.truncated)), ("final", final_v)):  # fmt: skip
            rows[k].append(v)
        successes += int(step.success[step.done].sum())
        episodes += int(step.done.sum())
        hist = step.obs_history
    ro = Rollout(
        obs={k: torch.stack([o[k] for o in rows["obs"]]) for k in rows["obs"][0]},
        sample=torch.stack(rows["sample"]), logp=torch.stack(rows["logp"]), values=torch.stack(rows["values"]),
        reward=torch.stack(rows["reward"]), terminated=torch.stack(rows["term"]), truncated=torch.stack(rows["trunc"]),
        final_values=torch.stack(rows["final"]), successes=successes, episodes=episodes, policy_s=policy_s,
        sim_s=sim_s, env_steps=env_steps,
    )  # fmt: skip
    return ro, hist


def on_policy_finetune(
    cfg: Any, run: Path, make_learner: Callable[[Any], Any], seeds: int, resume: bool, progress: bool
) -> Path:
    """Iterations of rollout -> ``learner.update`` -> log, a checkpoint (policy folder + learner state) every
    ``eval_every`` iterations and at the end, each evaluated in simulation without exploration noise."""
    if resume:
        raise RobostackError(f"{cfg.algo} starts fresh; use another --out")
    if (run / "config.yaml").exists():
        raise RobostackError(f"{run}: a run already exists here (choose another --out)")
    folder = resolve_policy_folder(cfg.from_run)
    policy = load_policy(folder, cfg.device).train()
    check_fits(policy.spec, task_spec(cfg.task))
    torch.manual_seed(cfg.seed)
    learner = make_learner(policy)
    stats = load_stats(folder)
    write_run_files(run, cfg, None)
    rng = np.random.default_rng([cfg.seed, 13])
    gen = torch.Generator().manual_seed(cfg.seed)
    log = RunLog(run, True, cfg.iterations, 0, f"finetune {cfg.algo}", progress)
    t0, decisions, env_steps = time.perf_counter(), 0, 0
    try:
        with VectorEnv(cfg.task, cfg.envs, seeds + cfg.seed * 100_000, cfg.workers) as env:
            first = env.reset()
            hist = {k: np.repeat(v[:, None], policy.config.n_obs_steps, axis=1) for k, v in first.items()}
            for it in range(1, cfg.iterations + 1):
                ro, hist = chunk_rollout(env, hist, cfg.steps_per_iteration, learner, gen, cfg.device)
                t_update = time.perf_counter()
                metrics = learner.update(ro, rng)
                decisions += cfg.steps_per_iteration * cfg.envs
                env_steps += ro.env_steps
                record = {"step": it, "decisions": decisions, "env_steps": env_steps, "seconds": time.perf_counter() - t0, **metrics,
                          "policy_s": ro.policy_s, "sim_s": ro.sim_s, "update_s": time.perf_counter() - t_update}  # fmt: skip
                if ro.episodes:
                    record["episode_success_rate"] = ro.successes / ro.episodes
                log.bar.update(1)
                log.log(record)
                if it == cfg.iterations or (cfg.eval_every and it % cfg.eval_every == 0):
                    ckpt = checkpoint_folder(run, it)
                    save_policy(learner.policy, ckpt, stats, {"step": it, "train_config": asdict(cfg)})
                    save_train_state(ckpt, it, learner.state_objects(), rng)
                    mark_last(run, ckpt)
                    if cfg.eval_episodes > 0:
                        ev = evaluate_checkpoint(
                            ckpt, cfg.task, cfg.eval_episodes, 1, RANGES["train-eval"].start
                        )
                        log.log({"step": it, "eval_success_rate": ev["success_rate"]})
    finally:
        log.close()
    return run
