"""IQL (Kostrikov et al., ICLR 2022): offline RL that never queries actions outside the data.

Losses are pure functions on tensors returning ``(loss, metrics)``; ``IQLLearner.update`` chains them in IQL's order:
value (expectile regression of V towards the target twin-Q's minimum), actor (advantage-weighted regression with
weights exp(beta * A) clipped at 100), Q (TD towards r + gamma V(s')), then the Polyak target. The actor is a
gaussian-family policy (single step) in the normalised action space: its mean is what export and the robot run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from robostack.errors import RobostackError
from robostack.policies.base import Policy
from robostack.policies.critics import QEnsemble, VEnsemble

WEIGHT_CLIP = 100.0


@dataclass
class IQLConfig:
    """IQL's AntMaze settings (sparse reward shifted by -1), named as in the paper."""

    expectile: float = 0.9
    """tau of the value's expectile regression (not the Polyak rate)."""
    beta: float = 10.0
    """Inverse temperature of the AWR weights exp(beta * A)."""
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target Q."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    layer_norm: bool = False
    """LayerNorm in Q and V (IQL: none)."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    batch_size: int = 256
    actor_cosine: bool = True
    """Cosine decay of the actor's learning rate over the offline steps (IQL; never online)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.expectile < 1.0:
            raise RobostackError(f"expectile must be in (0, 1), got {self.expectile}")


# ---------------------------------------------------------------------------------------------------- pure losses
def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(u < 0)| u^2 per element, u = diff."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.square()


def value_loss(
    target_q: torch.Tensor, v: torch.Tensor, expectile: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E[L_tau(min_i Q'_i(s, a) - V(s))]; ``target_q`` (2, B) without gradient, ``v`` (B,)."""
    loss = expectile_loss(target_q.min(dim=0).values.detach() - v, expectile).mean()
    return loss, {"value_loss": loss.detach(), "v_mean": v.detach().mean()}


def awr_weights(
    advantage: torch.Tensor, beta: torch.Tensor | float, clip: float = WEIGHT_CLIP
) -> torch.Tensor:
    """min(exp(beta * A), clip), without gradient; ``beta`` a scalar or one per sample (FamO2O)."""
    return torch.exp(advantage.detach() * beta).clamp(max=clip).detach()


def awr_loss(log_prob: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-E[w * log pi(a | s)] over the data's actions."""
    loss = -(weights * log_prob).mean()
    return loss, {"actor_loss": loss.detach(), "awr_weight_mean": weights.mean()}


def q_target(
    reward: torch.Tensor, terminated: torch.Tensor, next_v: torch.Tensor, gamma: float
) -> torch.Tensor:
    return reward + gamma * (1.0 - terminated.float()) * next_v


def q_loss(q: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared TD error of each member, summed over members (IQL: (q1 - y)^2 + (q2 - y)^2); ``q`` (2, B)."""
    loss = (q - target.detach().unsqueeze(0)).square().mean(dim=1).sum()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


def gaussian_log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(action; mean, exp(log_std)) summed over the last dimension."""
    z = (action - mean) / log_std.exp()
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)


# ---------------------------------------------------------------------------------------------------- learner
def check_single_step(policy: Policy, family: str) -> None:
    if policy.family != family:
        raise RobostackError(f"this algorithm trains a {family} policy, not a {policy.family} policy")
    if policy.config.horizon != 1 or policy.config.n_action_steps != 1:
        raise RobostackError("offline RL trains single-step policies (horizon 1, n_action_steps 1)")
    if policy.spec.image_keys:
        raise RobostackError("offline RL covers low-dim observations only")


class Critics:
    """Twin Q, its target and V over the actor's normalised low-dim features: IQL's value side, shared by FamO2O."""

    def __init__(self, cfg: IQLConfig, actor: Policy, device: torch.device | str) -> None:
        self.cfg, self.actor, self.device = cfg, actor, torch.device(device)
        self.keys = actor.spec.lowdim_keys
        width = (
            sum(int(torch.Size(actor.spec.obs[k].shape).numel()) for k in self.keys)
            * actor.config.n_obs_steps
        )
        da = actor.spec.action.shape[0]
        self.q = QEnsemble(width, da, 2, cfg.hidden, cfg.layer_norm).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = VEnsemble(width, 1, cfg.hidden, cfg.layer_norm).to(device)
        # fused: one kernel per optimiser step over all its parameters
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.critic_lr, fused=True)
        self.v_opt = torch.optim.Adam(self.v.parameters(), lr=cfg.value_lr, fused=True)

    def features(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        norm = self.actor.normalizer
        return torch.cat([norm.normalize(k, obs[k].float()).flatten(1) for k in self.keys], dim=-1)

    def normalized_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.actor.normalizer.normalize("action", action.float()).clamp(-1.0, 1.0)

    def update_value(self, f: torch.Tensor, a: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One V step; returns its metrics and min_i Q'_i(s, a), which the actor's advantage reuses (IQL takes the
        advantage against the same target critic and the updated V)."""
        with torch.no_grad():
            tq = self.q_target(f, a)
        loss, m = value_loss(tq, self.v(f)[0], self.cfg.expectile)
        self.v_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.v_opt.step()
        return m, tq.min(dim=0).values

    def advantage(self, f: torch.Tensor, target_q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return target_q - self.v(f)[0]

    def update_q(self, f: torch.Tensor, a: torch.Tensor, batch: dict[str, torch.Tensor],
                 f_next: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        with torch.no_grad():
            y = q_target(batch["reward"], batch["terminated"], self.v(f_next)[0], self.cfg.gamma)
        loss, m = q_loss(self.q(f, a), y)
        self.q_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.q_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()), self.cfg.tau)
        return m

    def state_objects(self) -> dict[str, Any]:
        return {"q": self.q, "q_target": self.q_target, "v": self.v, "q_opt": self.q_opt, "v_opt": self.v_opt}


class IQLLearner:
    """Actor (gaussian, single step) + ``Critics``; ``offline_steps`` sets the actor's cosine schedule.

    ``update`` is IQL's step; FamO2O (``algos.famo2o``) changes only what ``before_actor``, ``awr_beta`` and
    ``actor_log_prob`` return."""

    family = "gaussian"

    def __init__(self, cfg: IQLConfig, actor: Policy, offline_steps: int, device: torch.device | str = "cpu"):
        check_single_step(actor, self.family)
        self.cfg, self.actor = cfg, actor.to(device)
        self.critics = Critics(cfg, self.actor, device)
        self.actor_opt = torch.optim.Adam(self.actor_parameters(), lr=cfg.actor_lr, fused=True)
        self.actor_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, max(offline_steps, 1))
        self.online = False

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.actor.parameters())

    def state_objects(self) -> dict[str, Any]:
        return {"actor": self.actor, "actor_opt": self.actor_opt, "actor_sched": self.actor_sched,
                **self.critics.state_objects()}  # fmt: skip

    def _obs(self, batch: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
        return {k: batch[prefix + k] for k in self.critics.keys}

    def before_actor(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """Updates between V and the actor (IQL: none)."""
        return {}

    def awr_beta(self, f: torch.Tensor) -> torch.Tensor | float:
        """The AWR inverse temperature, a scalar or one per sample."""
        return self.cfg.beta

    def actor_log_prob(
        self, f: torch.Tensor, obs: dict[str, torch.Tensor], a: torch.Tensor, beta: torch.Tensor | float
    ) -> torch.Tensor:
        mean, std = self.actor.distribution({k: v.unsqueeze(1) for k, v in obs.items()})
        return gaussian_log_prob(a, mean[:, 0], std[:, 0].log())

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.critics
        obs, nxt = self._obs(batch), self._obs(batch, "next/")
        f, f_next = c.features(obs), c.features(nxt)
        a = c.normalized_action(batch["action"])
        m, tq = c.update_value(f, a)
        m.update(self.before_actor(f))
        beta = self.awr_beta(f)
        weights = awr_weights(c.advantage(f, tq), beta)
        loss, am = awr_loss(self.actor_log_prob(f, obs, a, beta), weights)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        if self.cfg.actor_cosine and not self.online:
            self.actor_sched.step()
        m.update(am)
        m.update(c.update_q(f, a, batch, f_next))
        return {k: float(v) for k, v in m.items()}

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Normalised actions (B, Da) for single observations: the mean, or a sample around it (online)."""
        mean, std = self.actor.distribution({k: obs[k].unsqueeze(1) for k in self.actor.spec.obs})
        a = mean[:, 0] if deterministic else mean[:, 0] + std[:, 0] * torch.randn_like(mean[:, 0])
        return a.clamp(-1.0, 1.0)
