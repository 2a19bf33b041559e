"""Diffusion policy: DDPM training (100 steps, squared-cosine, epsilon prediction), DDIM inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robostack.data.normalize import KeyStats
from robostack.policies.base import PolicySpec
from robostack.policies.denoising import DenoisingConfig, DenoisingPolicy
from robostack.policies.loss_mask import imitated_mean
from robostack.policies.registry import register_policy
from robostack.policies.schedulers import DDPMSchedule, ddim_coefficients, ddim_step


@dataclass
class DiffusionConfig(DenoisingConfig):
    type: str = "diffusion"
    num_train_steps: int = 100
    """DDPM steps of the training schedule."""
    num_inference_steps: int = 10
    """DDIM steps at inference (over the same 100-step schedule)."""
    clip_sample: bool = True
    """Clip the x0 estimate to [-1, 1] at every DDIM step."""


@register_policy("diffusion", DiffusionConfig)
class DiffusionPolicy(DenoisingPolicy):
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        super().__init__(config, spec, stats)
        self.schedule = DDPMSchedule(config.num_train_steps)
        self._ddim: dict[int, list[tuple[int, float, float]]] = {}

    @property
    def num_steps(self) -> int:
        return self.config.num_inference_steps

    @property
    def max_num_steps(self) -> int:
        return self.config.num_train_steps

    def set_num_steps(self, n: int) -> None:
        self.config.num_inference_steps = self.check_num_steps(n)

    def ddim_plan(self, steps: int) -> list[tuple[int, float, float]]:
        """DDIM (t, alpha_bar_t, alpha_bar_prev) as Python floats, computed once per step count: no tensor reads
        inside the sampling loop (torch.compile would break its graph there)."""
        if steps not in self._ddim:
            self._ddim[steps] = ddim_coefficients(self.schedule, steps)
        return self._ddim[steps]

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cond = self.condition(batch, first=True)
        x0 = self.normalizer.normalize("action", batch["action"].float())
        noise = torch.randn_like(x0)
        k = torch.randint(0, self.config.num_train_steps, (x0.shape[0],), device=x0.device)
        pred = self.unet(self.schedule.add_noise(x0, noise, k), k.float(), cond)
        loss = imitated_mean(F.mse_loss(pred, noise, reduction="none"), batch)
        return loss, {"loss": loss.detach()}

    def sample(self, cond: torch.Tensor, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """DDIM from ``noise`` (B, T_p, Da) to a normalised action sequence."""
        x = noise
        steps = num_steps or self.config.num_inference_steps
        for t, ab_t, ab_prev in self.ddim_plan(steps):
            eps = self.unet(x, torch.full((x.shape[0],), float(t), device=x.device), cond)
            x = ddim_step(x, eps, ab_t, ab_prev, self.config.clip_sample)
        return x
