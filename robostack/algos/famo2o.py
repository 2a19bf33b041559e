"""FamO2O on IQL (Wang et al., NeurIPS 2023): a universal policy pi_u(a | s, beta) trained with a per-sample AWR
inverse temperature beta, and a balance model pi_b(beta | s) that picks beta per state.

``FamO2OLearner.update`` runs the paper's order: V -> balance model -> its temperature -> universal policy -> Q ->
target Q. The balance model maximises min Q'(s, a) - alpha_b log pi_b(u | s) with a ~ pi_u(. | s, beta(u)) drawn
through the frozen universal policy (SAC-style, reparameterised through both); offline the universal policy's beta is
uniform on [beta_min, beta_max] per sample, online it comes from the balance model (no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from robostack.algos.iql import (
    Critics,
    IQLConfig,
    awr_loss,
    awr_weights,
    check_single_step,
    gaussian_log_prob,
)
from robostack.algos.sac import Temperature, temperature_loss
from robostack.policies.base import Policy


@dataclass
class BalanceConfig:
    lr: float = 3e-4
    target_entropy: float = -0.5
    init_temperature: float = 1.0
    temperature_lr: float = 3e-4


def balance_loss(
    q: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor | float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E_s[alpha log pi_b(u | s) - min_i Q'_i(s, a)]; ``q`` (2, B) with gradient through a and beta."""
    loss = (alpha * log_prob - q.min(dim=0).values).mean()
    return loss, {"balance_loss": loss.detach(), "balance_entropy": -log_prob.detach().mean()}


class FamO2OLearner:
    def __init__(
        self, cfg: IQLConfig, balance: BalanceConfig, policy: Policy, offline_steps: int,
        device: torch.device | str = "cpu",
    ) -> None:  # fmt: skip
        check_single_step(policy, "famo2o")
        self.cfg, self.balance_cfg, self.actor = cfg, balance, policy.to(device)
        self.critics = Critics(cfg, self.actor, device)
        p = self.actor
        self.universal_params = [*p.trunk.parameters(), *p.mean.parameters(), *p.log_std.parameters()]
        balance_params = [*p.balance_trunk.parameters(), *p.balance_mean.parameters(),
                          *p.balance_log_std.parameters()]  # fmt: skip
        self.actor_opt = torch.optim.Adam(self.universal_params, lr=cfg.actor_lr, fused=True)
        self.actor_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, max(offline_steps, 1))
        self.balance_opt = torch.optim.Adam(balance_params, lr=balance.lr, fused=True)
        self.temperature = Temperature(balance.init_temperature).to(device)
        self.temperature_opt = torch.optim.Adam(self.temperature.parameters(), lr=balance.temperature_lr)
        self.online = False

    def state_objects(self) -> dict[str, Any]:
        return {"actor": self.actor, "actor_opt": self.actor_opt, "actor_sched": self.actor_sched,
                "balance_opt": self.balance_opt, "temperature": self.temperature,
                "temperature_opt": self.temperature_opt, **self.critics.state_objects()}  # fmt: skip

    def _obs(self, batch: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
        return {k: batch[prefix + k] for k in self.critics.keys}

    def _balance_step(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.actor
        beta, log_prob = p.sample_beta(f)
        for w in self.universal_params:  # frozen: the balance loss moves the balance model only
            w.requires_grad_(False)
        mean, log_std = p.universal(f, beta)
        a = (mean + log_std.exp() * torch.randn_like(mean)).clamp(-1.0, 1.0)
        for w in self.universal_params:
            w.requires_grad_(True)
        loss, m = balance_loss(self.critics.q_target(f, a), log_prob, self.temperature.alpha.detach())
        self.balance_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.balance_opt.step()
        t_loss, t_m = temperature_loss(self.temperature.log_alpha, log_prob, self.balance_cfg.target_entropy)
        self.temperature_opt.zero_grad(set_to_none=True)
        t_loss.backward()
        self.temperature_opt.step()
        m.update(balance_temperature=t_m["temperature"], beta_mean=beta.detach().mean())
        return m

    def _universal_beta(self, f: torch.Tensor) -> torch.Tensor:
        c = self.actor.config
        if self.online:
            with torch.no_grad():
                return self.actor.sample_beta(f)[0]
        return torch.empty(f.shape[0], device=f.device).uniform_(c.beta_min, c.beta_max)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.critics
        obs, nxt = self._obs(batch), self._obs(batch, "next/")
        f, f_next = c.features(obs), c.features(nxt)
        a = c.normalized_action(batch["action"])
        m, tq = c.update_value(f, a)
        m.update(self._balance_step(f))
        beta = self._universal_beta(f)
        weights = awr_weights(c.advantage(f, tq), beta)
        mean, log_std = self.actor.universal(f, beta)
        loss, am = awr_loss(gaussian_log_prob(a, mean, log_std), weights)
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
        """FamO2O acting: beta = the balance model's mode, then a ~ pi_u(. | s, beta) (its mean when deterministic)."""
        f = self.actor.features({k: obs[k].unsqueeze(1) for k in self.actor.spec.obs})
        beta, _ = self.actor.sample_beta(f, deterministic=True)
        mean, log_std = self.actor.universal(f, beta)
        a = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return a.clamp(-1.0, 1.0)
