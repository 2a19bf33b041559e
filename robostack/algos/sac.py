"""SAC with RLPD's recipe: the off-policy learner of RLIF (and of plain SAC fine-tuning).

Losses are pure functions on tensors returning ``(loss, metrics)``; ``SACLearner.update`` chains them in RLPD's
order: ``utd`` critic updates (each on its own batch, target = min over a random subset of the target ensemble,
Polyak-averaged after every critic step), then one actor update and one temperature update on the last batch.
The actor is a Gaussian-family policy (tanh-squashed, single-step: horizon 1) in the normalised action space, so the
fine-tuned policy is an ordinary policy folder that exports and runs like any other.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robostack.errors import RobostackError
from robostack.policies.base import Policy
from robostack.policies.critics import QEnsemble
from robostack.train.data import to_tensors


@dataclass
class SACConfig:
    """RLPD's defaults (``configs/rlpd_config.py``), named as in the papers."""

    critics: int = 10
    """Critic ensemble size E."""
    critic_subset: int = 2
    """Target = min over a random subset of this many target critics (RLPD/REDQ)."""
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    layer_norm: bool = True
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target critics."""
    init_temperature: float = 1.0
    target_entropy: float | None = None
    """None: -(action dimensions), SAC's default."""
    backup_entropy: bool = False
    """Subtract alpha * log pi(a'|s') in the target (RLPD: off)."""
    batch_size: int = 256
    utd: int = 1
    """Critic updates per environment step (update-to-data ratio G)."""
    compile: bool = False
    """torch.compile the updates' critic, target and actor passes (fused LayerNorm, ReLU and Mish kernels forward
    and backward): 1.2-1.5x the 10-critic learner's updates per second on this project's 2-core CPU (none for 2
    critics), after ~40 s of compiling on the first update. Acting and evaluation stay eager."""

    def __post_init__(self) -> None:
        if not 1 <= self.critic_subset <= self.critics:
            raise RobostackError(
                f"critic_subset must be in [1, critics = {self.critics}], got {self.critic_subset}"
            )
        if self.utd < 1:
            raise RobostackError(f"utd must be at least 1, got {self.utd}")


# ---------------------------------------------------------------------------------------------------- pure losses
def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
    backup_entropy: bool,
) -> torch.Tensor:
    """r + gamma (1 - terminated) (min_i Q'_i(s', a') [- alpha log pi(a'|s')]); ``next_q`` (subset, B)."""
    v = next_q.min(dim=0).values
    if backup_entropy:
        v = v - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated.float()) * v


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared TD error over members and batch; ``q`` (E, B), ``target`` (B,) (no gradient)."""
    loss = ((q - target.detach().unsqueeze(0)) ** 2).mean()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


def actor_loss(
    q: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor | float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E_s[alpha log pi(a|s) - mean_i Q_i(s, a)], a ~ pi; ``q`` (E, B) with gradient through a."""
    loss = (alpha * log_prob - q.mean(dim=0)).mean()
    return loss, {"actor_loss": loss.detach(), "entropy": -log_prob.detach().mean()}


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-alpha (log pi + target entropy): raises alpha while the policy's entropy is below the target."""
    loss = -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()
    return loss, {"temperature_loss": loss.detach(), "temperature": log_alpha.detach().exp()}


# ---------------------------------------------------------------------------------------------------- learner
class Temperature(nn.Module):
    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(float(initial)).log())

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()


def check_actor(policy: Policy) -> None:
    if policy.family != "gaussian":
        raise RobostackError(f"SAC trains a gaussian-family actor, not a {policy.family} policy")
    cfg = policy.config
    if cfg.horizon != 1 or cfg.n_action_steps != 1:
        raise RobostackError(
            "SAC fine-tunes single-step policies (horizon 1): train the starting policy with "
            "--policy.horizon=1 --policy.n_action_steps=1"
        )
    if policy.spec.image_keys:
        raise RobostackError("SAC covers low-dim observations only")


class SACLearner:
    """Actor, critic ensemble, target ensemble, temperature and their optimisers."""

    def __init__(self, cfg: SACConfig, actor: Policy, device: torch.device | str = "cpu") -> None:
        check_actor(actor)
        self.cfg, self.actor, self.device = cfg, actor.to(device), torch.device(device)
        self.keys = actor.spec.lowdim_keys
        self.action_dim = actor.spec.action.shape[0]
        width = (
            sum(int(torch.Size(actor.spec.obs[k].shape).numel()) for k in self.keys)
            * actor.config.n_obs_steps
        )
        self.critic = QEnsemble(width, self.action_dim, cfg.critics, cfg.hidden, cfg.layer_norm).to(device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        # the update's passes; compiled ones share the modules' parameters, so checkpoints never see them
        self._critic, self._target, self._sample = self.critic, self.target, self.actor.squashed_sample
        if cfg.compile:
            # fallback_random: the compiled sampler draws eager's noise, so a compiled run resumes exactly as well
            opts = {"fallback_random": True}
            self._critic, self._target = torch.compile(self.critic), torch.compile(self.target)
            self._sample = torch.compile(self.actor.squashed_sample, options=opts)
        self.temperature = Temperature(cfg.init_temperature).to(device)
        self.target_entropy = (
            cfg.target_entropy if cfg.target_entropy is not None else -float(self.action_dim)
        )
        # fused: one kernel per optimiser step over all its parameters, on CPU as on GPU
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=True)
        self.temperature_opt = torch.optim.Adam(
            self.temperature.parameters(), lr=cfg.temperature_lr, fused=True
        )

    def state_objects(self) -> dict[str, Any]:
        """Everything ``--resume`` restores."""
        return {
            "actor": self.actor, "critic": self.critic, "target": self.target, "temperature": self.temperature,
            "actor_opt": self.actor_opt, "critic_opt": self.critic_opt, "temperature_opt": self.temperature_opt,
        }  # fmt: skip

    # -------------------------------------------------------------- tensors
    def features(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The critics' input: the actor's normalisation of every low-dim key, flattened (B, F)."""
        norm = self.actor.normalizer
        return torch.cat([norm.normalize(k, obs[k].float()).flatten(1) for k in self.keys], dim=-1)

    def _actor_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: obs[k].unsqueeze(1) if obs[k].dim() == len(self.actor.spec.obs[k].shape) + 1 else obs[k]
                for k in self.actor.spec.obs}  # fmt: skip

    def sample_action(
        self, obs: dict[str, torch.Tensor], deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised action (B, Da), log pi (B,)) from single observations (B, ...)."""
        a, log_prob = self.actor.squashed_sample(self._actor_obs(obs), deterministic)
        return a[:, 0], log_prob

    @torch.no_grad()
    def raw_action(
        self, obs: dict[str, np.ndarray], low: np.ndarray, high: np.ndarray, deterministic: bool = False
    ) -> np.ndarray:
        """What the online loop executes: the actor's action in the task's raw units, clipped to ``[low, high]``,
        (B, Da) float32, from single observations (B, ...)."""
        a, _ = self.sample_action(
            to_tensors({k: obs[k] for k in self.actor.spec.obs}, self.device), deterministic
        )
        raw = self.actor.normalizer.unnormalize("action", a)
        return np.clip(raw.cpu().numpy(), low, high).astype(np.float32)

    def _update_sample(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        a, log_prob = self._sample(self._actor_obs(obs))
        return a[:, 0], log_prob

    def normalized_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.actor.normalizer.normalize("action", action.float()).clamp(-1.0, 1.0)

    # -------------------------------------------------------------- updates
    def update_critic(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = {k: batch[k] for k in self.keys}
        nxt = {k: batch["next/" + k] for k in self.keys}
        with torch.no_grad():
            a2, logp2 = self._update_sample(nxt)
            subset = torch.randperm(cfg.critics, device=self.device)[: cfg.critic_subset]
            next_q = self._target(self.features(nxt), a2, subset)
            y = td_target(batch["reward"], batch["terminated"], next_q, logp2, self.temperature.alpha, cfg.gamma,
                          cfg.backup_entropy)  # fmt: skip
        q = self._critic(self.features(obs), self.normalized_action(batch["action"]))
        loss, metrics = critic_loss(q, y)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.critic.parameters()), cfg.tau)
        return metrics

    def update_actor(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs = {k: batch[k] for k in self.keys}
        a, log_prob = self._update_sample(obs)
        self.critic.requires_grad_(False)  # the actor's loss moves the actor only: no critic weight gradients
        q = self._critic(self.features(obs).detach(), a)
        self.critic.requires_grad_(True)
        loss, metrics = actor_loss(q, log_prob, self.temperature.alpha.detach())
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        t_loss, t_metrics = temperature_loss(self.temperature.log_alpha, log_prob, self.target_entropy)
        self.temperature_opt.zero_grad(set_to_none=True)
        t_loss.backward()
        self.temperature_opt.step()
        return {**metrics, **t_metrics}

    def update(self, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One learner step: a critic update per batch (``utd`` of them), then actor and temperature on the last."""
        metrics: dict[str, torch.Tensor] = {}
        for batch in batches:
            metrics = self.update_critic(batch)
        metrics.update(self.update_actor(batches[-1]))
        return {k: float(v) for k, v in metrics.items()}
