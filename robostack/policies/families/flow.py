"""Flow-matching policy: the diffusion policy's U-Net predicting a velocity field, integrated from noise to actions
with a configurable number of Euler or midpoint steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robostack.errors import RobostackError
from robostack.policies.denoising import DenoisingConfig, DenoisingPolicy
from robostack.policies.loss_mask import imitated_mean
from robostack.policies.registry import register_policy
from robostack.policies.schedulers import flow_interpolate, flow_times

TIME_SCALE = 100.0  # the U-Net's step embedding sees t in [0, 100], the range it sees as a diffusion model


@dataclass
class FlowConfig(DenoisingConfig):
    type: str = "flow"
    num_integration_steps: int = 10
    """ODE steps from noise (t = 1) to actions (t = 0)."""
    integrator: str = "euler"
    """euler | midpoint (midpoint costs two network calls per step)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.integrator not in ("euler", "midpoint"):
            raise RobostackError(f"unknown integrator '{self.integrator}' (choose from euler, midpoint)")


@register_policy("flow", FlowConfig)
class FlowPolicy(DenoisingPolicy):
    config: FlowConfig

    @property
    def num_steps(self) -> int:
        return self.config.num_integration_steps

    def set_num_steps(self, n: int) -> None:
        self.config.num_integration_steps = self.check_num_steps(n)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cond = self.condition(batch, first=True)
        x0 = self.normalizer.normalize("action", batch["action"].float())
        noise = torch.randn_like(x0)
        t = torch.rand(x0.shape[0], device=x0.device)
        x_t, target = flow_interpolate(x0, noise, t)
        loss = imitated_mean(
            F.mse_loss(self.unet(x_t, t * TIME_SCALE, cond), target, reduction="none"), batch
        )
        return loss, {"loss": loss.detach()}

    def velocity(self, x: torch.Tensor, t: float, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, torch.full((x.shape[0],), t * TIME_SCALE, device=x.device), cond)

    def sample(self, cond: torch.Tensor, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        x = noise
        for t, dt in flow_times(num_steps or self.config.num_integration_steps):
            if self.config.integrator == "euler":
                x = x - dt * self.velocity(x, t, cond)
            else:
                x_mid = x - 0.5 * dt * self.velocity(x, t, cond)
                x = x - dt * self.velocity(x_mid, t - 0.5 * dt, cond)
        return x.clamp(-1.0, 1.0)
