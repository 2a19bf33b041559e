"""DPPO (Ren et al., ICLR 2025): PPO over the denoising chain of a behaviour-cloned diffusion policy, online in N
simulated copies with the task's sparse success reward.

Each decision draws a denoising chain with the stochastic sampler (``policies.stochastic_sampler``: DDIM with
eta = 1, every step an exact Gaussian, DPPO's noise floors and clipping); the executed slice of its end is the
environment action, T_a steps per decision (``VectorEnv.step_chunk``). A frozen copy of the starting policy runs the
first K - K' denoising steps, the trainable copy the last K'. The critic sees the environment state only (the last
observation frame); GAE runs over decisions; denoising step k of a decision gets gamma_denoise^k times its
advantage; each step's ratio is clipped with its own epsilon (``algos.ppo.clip_schedule``). Log-likelihoods are
clamped to [-5, 2] and averaged over the executed actions' elements, one ratio per denoising step (authors' code).
What ships is an ordinary diffusion policy folder: evaluation uses the deterministic sampler, and ``eval``,
``export``, the runtimes and the ROS node take it unchanged.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robostack.algos.online_data import check_fits
from robostack.algos.ppo import (
    clip_schedule,
    clipped_policy_loss,
    denoising_discount,
    explained_variance,
    gae,
    value_loss,
)
from robostack.algos.registry import register_algorithm
from robostack.data.normalize import load_stats
from robostack.errors import RobostackError
from robostack.eval.seeds import RANGES
from robostack.policies.checkpoint import load_policy, save_policy
from robostack.policies.critics import VEnsemble
from robostack.policies.loading import resolve_policy_folder
from robostack.policies.stochastic_sampler import StochasticSampling, sample_chain, score_chain
from robostack.sim.registry import task_spec
from robostack.sim.vector_env import VectorEnv
from robostack.train.data import to_tensors
from robostack.train.hooks import evaluate_checkpoint
from robostack.train.run_log import RunLog, write_run_files
from robostack.train.state import checkpoint_folder, mark_last, save_train_state

DPPO_SEEDS = 4_000_000
"""DPPO's training episodes take seeds from here (above every evaluation range and the other online methods')."""
LOGP_MIN, LOGP_MAX = -5.0, 2.0


@dataclass
class DPPOConfig:
    """Defaults after DPPO's Robomimic state configs (``ft_ppo_diffusion_mlp``), sized down for a CPU."""

    algo: str = "dppo"
    from_run: str = ""
    """Training run or policy folder of the behaviour-cloned diffusion policy."""
    task: str = "push"
    iterations: int = 50
    envs: int = 8
    workers: int = 0
    steps_per_iteration: int = 32
    """Decisions (action chunks) per copy per iteration."""
    ft_denoising_steps: int = 10
    """K': denoising steps fine-tuned (the last ones); the frozen starting policy runs the others."""
    sampling: StochasticSampling = field(default_factory=StochasticSampling)
    gamma: float = 0.999
    """Discount per decision."""
    gae_lambda: float = 0.95
    gamma_denoise: float = 0.99
    clip_base: float = 0.001
    """clip_ploss_coef_base: epsilon of the noisiest fine-tuned step."""
    clip: float = 0.01
    """clip_ploss_coef: epsilon of the last step."""
    clip_rate: float = 3.0
    actor_lr: float = 1e-5
    critic_lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 256
    """Decisions per minibatch (each carries its K' denoising steps)."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    eval_every: int = 10
    eval_episodes: int = 50
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.sampling, dict):
            self.sampling = StochasticSampling(**self.sampling)
        if not self.from_run:
            raise RobostackError("--from is required: the behaviour-cloned diffusion policy to fine-tune")
        if self.iterations < 1 or self.steps_per_iteration < 1 or self.envs < 1:
            raise RobostackError("iterations, steps_per_iteration and envs must be at least 1")


@dataclass
class Rollout:
    """One iteration's decisions, (S, N, ...) per field."""

    obs: dict[str, torch.Tensor]
    chain: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_values: torch.Tensor
    successes: int = 0
    episodes: int = 0


class DPPOLearner:
    def __init__(self, cfg: DPPOConfig, policy: Any) -> None:
        if policy.family != "diffusion":
            raise RobostackError(f"DPPO fine-tunes diffusion policies, not a {policy.family} policy")
        if policy.spec.image_keys:
            raise RobostackError("DPPO here covers low-dim observations only")
        steps = policy.num_steps
        if not 1 <= cfg.ft_denoising_steps <= steps:
            raise RobostackError(f"ft_denoising_steps must be in [1, {steps}] (the policy's denoising steps)")
        self.cfg, self.policy, self.steps = cfg, policy, steps
        self.frozen = copy.deepcopy(policy).requires_grad_(False).eval()
        self.keys = policy.spec.lowdim_keys
        width = sum(int(np.prod(policy.spec.obs[k].shape)) for k in self.keys)
        self.critic = VEnsemble(width, 1, cfg.critic_hidden).to(cfg.device)
        self.actor_opt = torch.optim.Adam(policy.unet.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.clip = clip_schedule(cfg.ft_denoising_steps, cfg.clip_base, cfg.clip, cfg.clip_rate)
        self.discount = denoising_discount(cfg.ft_denoising_steps, cfg.gamma_denoise)
        t_o, t_a = policy.config.n_obs_steps, policy.config.n_action_steps
        self.executed = slice(t_o - 1, t_o - 1 + t_a)

    def state_objects(self) -> dict[str, Any]:
        return {
            "actor": self.policy,
            "critic": self.critic,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
        }

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """V of the environment state: the latest frame of every low-dim key, normalised (B,)."""
        norm = self.policy.normalizer
        last = [norm.normalize(k, obs[k][:, -1].float()).flatten(1) if obs[k].dim() > 2 else
                norm.normalize(k, obs[k].float()).flatten(1) for k in self.keys]  # fmt: skip
        return self.critic(torch.cat(last, -1))[0]

    def mean_logp(self, logp: torch.Tensor) -> torch.Tensor:
        """(B, K', T_p, Da) elementwise -> (B, K'): clamped, averaged over the executed actions' elements."""
        return logp[:, :, self.executed].clamp(LOGP_MIN, LOGP_MAX).mean(dim=(2, 3))

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], gen: torch.Generator
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(executed raw actions (N, T_a, Da), chain, per-step log-likelihoods (N, K', ...))."""
        cfg = self.cfg
        cond = self.policy.condition(obs)
        noise = torch.randn((cond.shape[0], *self.policy.noise_shape), generator=gen)
        chain, logp = sample_chain(self.policy, cond, noise, self.steps, cfg.sampling, gen, self.frozen,
                                   cfg.ft_denoising_steps)  # fmt: skip
        actions = self.policy.normalizer.unnormalize("action", chain[:, -1])[:, self.executed]
        actions = self.policy.clip_actions(actions)
        return actions.numpy(), chain, logp[:, self.steps - cfg.ft_denoising_steps :]

    def update(self, ro: Rollout, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = gae(ro.reward, ro.values, ro.terminated, ro.truncated, ro.final_values[-1], cfg.gamma,
                       cfg.gae_lambda, bootstrap_values=ro.final_values)  # fmt: skip
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 - (S, N, ...) -> (S*N, ...)
        obs = {k: flat(v) for k, v in ro.obs.items()}
        chain, old = flat(ro.chain), self.mean_logp(flat(ro.logp))
        adv, ret = flat(adv), flat(ret)
        n = adv.shape[0]
        metrics: dict[str, float] = {}
        for _ in range(cfg.epochs):
            for idx in np.array_split(rng.permutation(n), max(1, n // cfg.batch_size)):
                i = torch.as_tensor(idx)
                mb_obs = {k: v[i] for k, v in obs.items()}
                a = adv[i]
                a = (a - a.mean()) / (a.std() + 1e-8) if len(idx) > 1 else a
                cond = self.policy.condition(mb_obs)
                new = self.mean_logp(score_chain(self.policy, cond, chain[i], self.steps, cfg.sampling,
                                                 cfg.ft_denoising_steps))  # fmt: skip
                p_loss, pm = clipped_policy_loss(new, old[i], a[:, None] * self.discount, self.clip)
                v_loss, vm = value_loss(self.value(mb_obs), ret[i])
                self.actor_opt.zero_grad(set_to_none=True)
                self.critic_opt.zero_grad(set_to_none=True)
                (p_loss + v_loss).backward()
                self.actor_opt.step()
                self.critic_opt.step()
                metrics = {k: float(v) for k, v in {**pm, **vm}.items()}
        with torch.no_grad():
            metrics["explained_variance"] = explained_variance(flat(ro.values), ret)
        return metrics


def _rollout(
    learner: DPPOLearner, env: VectorEnv, hist: dict[str, np.ndarray], gen: torch.Generator
) -> tuple:
    cfg, fields_ = (
        learner.cfg,
        {k: [] for k in ("obs", "chain", "logp", "values", "reward", "term", "trunc", "final")},
    )
    successes = episodes = 0
    t_o = learner.policy.config.n_obs_steps
    for _ in range(cfg.steps_per_iteration):
        obs = to_tensors({k: hist[k] for k in learner.policy.spec.obs}, torch.device(cfg.device))
        actions, chain, logp = learner.act(obs, gen)
        with torch.no_grad():
            values = learner.value(obs)
        step = env.step_chunk(actions, history=t_o)
        with torch.no_grad():
            final_v = learner.value(
                to_tensors({k: step.final_obs[k] for k in learner.keys}, torch.device(cfg.device))
            )
        for k, v in (("obs", obs), ("chain", chain), ("logp", logp), ("values", values),
                     ("reward", torch.as_tensor(step.reward)), ("term", torch.as_tensor(step.terminated)),
                     ("trunc", torch.as_tensor(step.truncated)), ("final", final_v)):  # fmt: skip
            fields_[k].append(v)
        successes += int(step.success[step.done].sum())
        episodes += int(step.done.sum())
        hist = step.obs_history
    stack = lambda xs: torch.stack(xs)  # noqa: E731
    ro = Rollout(
        obs={k: torch.stack([o[k] for o in fields_["obs"]]) for k in fields_["obs"][0]},
        chain=stack(fields_["chain"]), logp=stack(fields_["logp"]), values=stack(fields_["values"]),
        reward=stack(fields_["reward"]), terminated=stack(fields_["term"]), truncated=stack(fields_["trunc"]),
        final_values=stack(fields_["final"]), successes=successes, episodes=episodes,
    )  # fmt: skip
    return ro, hist


def _save(
    out: Path, it: int, learner: DPPOLearner, stats: Any, rng: np.random.Generator, cfg: DPPOConfig
) -> Path:
    folder = checkpoint_folder(out, it)
    save_policy(learner.policy, folder, stats, {"step": it, "train_config": asdict(cfg)})
    save_train_state(folder, it, learner.state_objects(), rng)
    mark_last(out, folder)
    return folder


@register_algorithm(
    "dppo", "finetune", DPPOConfig, "DPPO: PPO over the denoising chain of a diffusion policy"
)
def finetune(
    cfg: DPPOConfig, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> Path:
    if resume:
        raise RobostackError("dppo starts fresh; use another --out")
    run = Path(out)
    if (run / "config.yaml").exists():
        raise RobostackError(f"{run}: a run already exists here (choose another --out)")
    folder = resolve_policy_folder(cfg.from_run)
    policy = load_policy(folder, cfg.device).train()
    check_fits(policy.spec, task_spec(cfg.task))
    torch.manual_seed(cfg.seed)
    learner = DPPOLearner(cfg, policy)
    stats = load_stats(folder)
    write_run_files(run, cfg, None)
    rng = np.random.default_rng([cfg.seed, 13])
    gen = torch.Generator().manual_seed(cfg.seed)
    log = RunLog(run, True, cfg.iterations, 0, "finetune dppo", progress)
    t0, decisions = time.perf_counter(), 0
    try:
        with VectorEnv(cfg.task, cfg.envs, DPPO_SEEDS + cfg.seed * 100_000, cfg.workers) as env:
            first = env.reset()
            hist = {k: np.repeat(v[:, None], policy.config.n_obs_steps, axis=1) for k, v in first.items()}
            for it in range(1, cfg.iterations + 1):
                ro, hist = _rollout(learner, env, hist, gen)
                metrics = learner.update(ro, rng)
                decisions += cfg.steps_per_iteration * cfg.envs
                record = {"step": it, "decisions": decisions, "seconds": time.perf_counter() - t0, **metrics}
                if ro.episodes:
                    record["episode_success_rate"] = ro.successes / ro.episodes
                log.bar.update(1)
                log.log(record)
                if it == cfg.iterations or (cfg.eval_every and it % cfg.eval_every == 0):
                    ckpt = _save(run, it, learner, stats, rng, cfg)
                    if cfg.eval_episodes > 0:
                        ev = evaluate_checkpoint(
                            ckpt, cfg.task, cfg.eval_episodes, 1, RANGES["train-eval"].start
                        )
                        log.log({"step": it, "eval_success_rate": ev["success_rate"]})
    finally:
        log.close()
    return run
