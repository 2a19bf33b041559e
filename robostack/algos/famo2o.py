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

from robostack.algos.iql import IQLConfig, IQLLearner, gaussian_log_prob
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


class FamO2OLearner(IQLLearner):
    family = "famo2o"

    def __init__(
        self, cfg: IQLConfig, balance: BalanceConfig, policy: Policy, offline_steps: int,
        device: torch.device | str = "cpu",
    ) -> None:  # fmt: skip
        super().__init__(cfg, policy, offline_steps, device)
        self.balance_cfg = balance
        p = self.actor
        balance_params = [*p.balance_trunk.parameters(), *p.balance_mean.parameters(),
                          *p.balance_log_std.parameters()]  # fmt: skip
        self.balance_opt = torch.optim.Adam(balance_params, lr=balance.lr, fused=True)
        self.temperature = Temperature(balance.init_temperature).to(device)
        self.temperature_opt = torch.optim.Adam(self.temperature.parameters(), lr=balance.temperature_lr)

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        """The universal policy's weights (the balance model has its own optimiser)."""
        p = self.actor
        return [*p.trunk.parameters(), *p.mean.parameters(), *p.log_std.parameters()]

    def state_objects(self) -> dict[str, Any]:
        return {**super().state_objects(), "balance_opt": self.balance_opt, "temperature": self.temperature,
                "temperature_opt": self.temperature_opt}  # fmt: skip

    def before_actor(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """The balance model's step through the frozen universal policy and the target critics, then alpha_b's."""
        p = self.actor
        beta, log_prob = p.sample_beta(f)
        universal = self.actor_parameters()
        for w in universal:  # frozen: the balance loss moves the balance model only
            w.requires_grad_(False)
        mean, log_std = p.universal(f, beta)
        a = (mean + log_std.exp() * torch.randn_like(mean)).clamp(-1.0, 1.0)
        for w in universal:
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

    def awr_beta(self, f: torch.Tensor) -> torch.Tensor:
        """Offline: uniform on [beta_min, beta_max] per sample; online: the balance model's (no gradient)."""
        c = self.actor.config
        if self.online:
            with torch.no_grad():
                return self.actor.sample_beta(f)[0]
        return torch.empty(f.shape[0], device=f.device).uniform_(c.beta_min, c.beta_max)

    def actor_log_prob(
        self, f: torch.Tensor, obs: dict[str, torch.Tensor], a: torch.Tensor, beta: torch.Tensor | float
    ) -> torch.Tensor:
        mean, log_std = self.actor.universal(f, torch.as_tensor(beta))
        return gaussian_log_prob(a, mean, log_std)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """FamO2O acting: beta = the balance model's mode, then a ~ pi_u(. | s, beta) (its mean when deterministic)."""
        f = self.actor.features({k: obs[k].unsqueeze(1) for k in self.actor.spec.obs})
        beta, _ = self.actor.sample_beta(f, deterministic=True)
        mean, log_std = self.actor.universal(f, beta)
        a = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return a.clamp(-1.0, 1.0)
