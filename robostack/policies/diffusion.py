"""Diffusion policy: DDPM training (100 steps, squared-cosine, epsilon prediction), DDIM inference."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robostack.data.normalize import KeyStats
from robostack.errors import RobostackError
from robostack.policies.base import Policy, PolicyConfig, PolicySpec
from robostack.policies.encoders import ObsEncoder
from robostack.policies.normalizer import Normalizer
from robostack.policies.registry import register_policy
from robostack.policies.schedulers import DDPMSchedule, ddim_coefficients, ddim_step
from robostack.policies.unet1d import ConditionalUnet1D


@dataclass
class UnetConfig:
    """The denoiser backbone shared by the diffusion and flow policies."""

    down_dims: list[int] = field(default_factory=lambda: [256, 512, 1024])
    """Channels per U-Net level (Diffusion Policy low-dim: 256/512/1024)."""
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 256
    film_scale: bool = True
    image_feature_dim: int = 64
    """Features per camera image from the ResNet-18 encoder."""
    crop_ratio: float = 0.9
    """Random crop (training) / centre crop (inference) as a fraction of the image side."""


@dataclass
class DiffusionConfig(PolicyConfig):
    type: str = "diffusion"
    unet: UnetConfig = field(default_factory=UnetConfig)
    num_train_steps: int = 100
    """DDPM steps of the training schedule."""
    num_inference_steps: int = 10
    """DDIM steps at inference (over the same 100-step schedule)."""
    clip_sample: bool = True
    """Clip the x0 estimate to [-1, 1] at every DDIM step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.unet, dict):
            self.unet = UnetConfig(**self.unet)
        levels = len(self.unet.down_dims) - 1
        if self.horizon % (2**levels):
            raise RobostackError(f"horizon ({self.horizon}) must be divisible by {2**levels} for this U-Net")


def build_denoiser(config: DiffusionConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> tuple:
    keys = [*spec.lowdim_keys, "action"]
    normalizer = Normalizer(stats, keys)
    encoder = ObsEncoder(
        normalizer, spec.lowdim_keys, spec.image_keys, config.unet.image_feature_dim, config.unet.crop_ratio
    )
    per_step = sum(spec.obs[k].shape[0] if spec.obs[k].shape else 1 for k in spec.lowdim_keys)
    per_step += len(spec.image_keys) * config.unet.image_feature_dim
    unet = ConditionalUnet1D(
        action_dim=spec.action.shape[0],
        global_cond_dim=per_step * config.n_obs_steps,
        step_embed_dim=config.unet.step_embed_dim,
        down_dims=tuple(config.unet.down_dims),
        kernel_size=config.unet.kernel_size,
        n_groups=config.unet.n_groups,
        film_scale=config.unet.film_scale,
    )
    return encoder, unet


@register_policy("diffusion", DiffusionConfig)
class DiffusionPolicy(Policy):
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        super().__init__(config, spec)
        self.encoder, self.unet = build_denoiser(config, spec, stats)
        self.schedule = DDPMSchedule(config.num_train_steps)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cond = self.encoder({k: batch[k][:, : self.config.n_obs_steps] for k in self.spec.obs})
        x0 = self.normalizer.normalize("action", batch["action"].float())
        noise = torch.randn_like(x0)
        k = torch.randint(0, self.config.num_train_steps, (x0.shape[0],), device=x0.device)
        x_k = self.schedule.add_noise(x0, noise, k)
        pred = self.unet(x_k, k.float(), cond)
        loss = F.mse_loss(pred, noise)
        return loss, {"loss": loss.detach()}

    def sample(
        self, cond: torch.Tensor, noise: torch.Tensor, num_inference_steps: int | None = None
    ) -> torch.Tensor:
        """DDIM from ``noise`` (B, T_p, Da) to a normalised action sequence."""
        x = noise
        b = x.shape[0]
        steps = num_inference_steps or self.config.num_inference_steps
        for t, ab_t, ab_prev in ddim_coefficients(self.schedule, steps):
            eps = self.unet(x, torch.full((b,), float(t), device=x.device), cond)
            x = ddim_step(x, eps, ab_t, ab_prev, self.config.clip_sample)
        return x

    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        cond = self.encoder({k: obs[k][:, -self.config.n_obs_steps :] for k in self.spec.obs})
        b = cond.shape[0]
        if noise is None:
            noise = torch.randn(
                (b, self.config.horizon, self.spec.action.shape[0]), generator=generator, device=cond.device
            )
        x = self.sample(cond, noise)
        actions = self.normalizer.unnormalize("action", x)
        start = self.config.n_obs_steps - 1
        return self.clip_actions(actions[:, start : start + self.config.n_action_steps])
