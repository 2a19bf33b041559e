"""Flow-matching policy: the diffusion policy's U-Net predicting a velocity field, integrated from noise to actions
with a configurable number of Euler or midpoint steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robostack.data.normalize import KeyStats
from robostack.errors import RobostackError
from robostack.policies.base import Policy, PolicyConfig, PolicySpec
from robostack.policies.diffusion import UnetConfig, build_denoiser
from robostack.policies.registry import register_policy
from robostack.policies.schedulers import flow_interpolate, flow_times

TIME_SCALE = 100.0  # the U-Net's step embedding sees t in [0, 100], the range it sees as a diffusion model


@dataclass
class FlowConfig(PolicyConfig):
    type: str = "flow"
    unet: UnetConfig = field(default_factory=UnetConfig)
    num_integration_steps: int = 10
    """ODE steps from noise (t = 1) to actions (t = 0)."""
    integrator: str = "euler"
    """euler | midpoint (midpoint costs two network calls per step)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.unet, dict):
            self.unet = UnetConfig(**self.unet)
        if self.integrator not in ("euler", "midpoint"):
            raise RobostackError(f"unknown integrator '{self.integrator}' (choose from euler, midpoint)")
        levels = len(self.unet.down_dims) - 1
        if self.horizon % (2**levels):
            raise RobostackError(f"horizon ({self.horizon}) must be divisible by {2**levels} for this U-Net")


@register_policy("flow", FlowConfig)
class FlowPolicy(Policy):
    config: FlowConfig

    def __init__(self, config: FlowConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        super().__init__(config, spec)
        self.encoder, self.unet = build_denoiser(config, spec, stats)  # type: ignore[arg-type]

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cond = self.encoder({k: batch[k][:, : self.config.n_obs_steps] for k in self.spec.obs})
        x0 = self.normalizer.normalize("action", batch["action"].float())
        noise = torch.randn_like(x0)
        t = torch.rand(x0.shape[0], device=x0.device)
        x_t, target = flow_interpolate(x0, noise, t)
        loss = F.mse_loss(self.unet(x_t, t * TIME_SCALE, cond), target)
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

    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        cond = self.encoder({k: obs[k][:, -self.config.n_obs_steps :] for k in self.spec.obs})
        if noise is None:
            noise = torch.randn(
                (cond.shape[0], self.config.horizon, self.spec.action.shape[0]),
                generator=generator,
                device=cond.device,
            )
        actions = self.normalizer.unnormalize("action", self.sample(cond, noise))
        start = self.config.n_obs_steps - 1
        return self.clip_actions(actions[:, start : start + self.config.n_action_steps])
