"""What the diffusion and flow policies share: the denoiser backbone's config (U-Net or residual MLP), its construction, and inference from a
noise sample to the executed, un-normalised, clipped action chunk. Each family supplies its loss and sampler."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field

import torch

from robostack.data.normalize import KeyStats
from robostack.errors import RobostackError
from robostack.policies.base import Policy, PolicyConfig, PolicySpec
from robostack.policies.encoders import ObsEncoder
from robostack.policies.mlp_denoiser import MLPDenoiser
from robostack.policies.normalizer import Normalizer
from robostack.policies.unet1d import ConditionalUnet1D


@dataclass
class UnetConfig:
    """The denoiser backbone shared by the diffusion and flow policies: the 1-D U-Net (default) or, with
    ``backbone: mlp``, DPPO's residual MLP over the flattened chunk (``policies.mlp_denoiser``; for short chunks of
    low-dim observations, where online RL's repeated scoring makes the U-Net's cost dominate)."""

    backbone: str = "unet"
    """``unet`` | ``mlp``."""

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
    mlp_hidden: int = 512
    """Width of the MLP backbone (DPPO's Robomimic state policies: 512)."""
    mlp_blocks: int = 1
    """Residual blocks (two layers each) of the MLP backbone."""


@dataclass
class DenoisingConfig(PolicyConfig):
    unet: UnetConfig = field(default_factory=UnetConfig)
    obs_noise: float = 0.0
    """Std of Gaussian noise added to the normalised low-dim observations in training (0: off): a regulariser that
    makes the policy answer a slightly shifted state as it answers the demonstrated one."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.unet, dict):
            self.unet = UnetConfig(**self.unet)
        if self.obs_noise < 0:
            raise RobostackError(f"obs_noise must be >= 0, got {self.obs_noise}")
        if self.unet.backbone not in ("unet", "mlp"):
            raise RobostackError(f"unet.backbone must be 'unet' or 'mlp', got {self.unet.backbone!r}")
        levels = len(self.unet.down_dims) - 1
        if self.unet.backbone == "unet" and self.horizon % (2**levels):
            raise RobostackError(f"horizon ({self.horizon}) must be divisible by {2**levels} for this U-Net")


class DenoisingPolicy(Policy):
    """Observation encoder + conditional denoiser (U-Net or MLP); subclasses define ``compute_loss`` and ``sample``."""

    config: DenoisingConfig

    def __init__(self, config: DenoisingConfig, spec: PolicySpec, stats: dict[str, KeyStats]) -> None:
        super().__init__(config, spec)
        u = config.unet
        normalizer = Normalizer(stats, [*spec.lowdim_keys, "action"])
        self.encoder = ObsEncoder(
            normalizer, spec.lowdim_keys, spec.image_keys, u.image_feature_dim, u.crop_ratio, config.obs_noise
        )
        per_step = sum(spec.obs[k].shape[0] if spec.obs[k].shape else 1 for k in spec.lowdim_keys)
        per_step += len(spec.image_keys) * u.image_feature_dim
        # Named ``unet`` whichever backbone it is: samplers, DPPO, composition and export call ``policy.unet``.
        self.unet: torch.nn.Module
        if u.backbone == "mlp":
            self.unet = MLPDenoiser(
                spec.action.shape[0], config.horizon, per_step * config.n_obs_steps, u.step_embed_dim,
                u.mlp_hidden, u.mlp_blocks,
            )  # fmt: skip
        else:
            self.unet = ConditionalUnet1D(
                action_dim=spec.action.shape[0],
                global_cond_dim=per_step * config.n_obs_steps,
                step_embed_dim=u.step_embed_dim,
                down_dims=tuple(u.down_dims),
                kernel_size=u.kernel_size,
                n_groups=u.n_groups,
                film_scale=u.film_scale,
            )

    def condition(self, obs: dict[str, torch.Tensor], first: bool = False) -> torch.Tensor:
        """Global conditioning from the T_o frames: the first ones of a training window, the latest at inference."""
        return self.encoder(self.frames(obs, first))

    @abstractmethod
    def sample(self, cond: torch.Tensor, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """Noise (B, T_p, Da) -> a normalised action sequence in [-1, 1] (``num_steps``: None = configured)."""

    @property
    def max_num_steps(self) -> int | None:
        """Most sampler steps the family can take (None: no limit)."""
        return None

    def check_num_steps(self, n: int) -> int:
        most = self.max_num_steps
        if n < 1 or (most is not None and n > most):
            bound = f"[1, {most}]" if most is not None else ">= 1"
            raise RobostackError(f"the number of denoising steps must be in {bound} for this policy, got {n}")
        return int(n)

    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        cond = self.condition(obs)
        if noise is None:
            shape = (cond.shape[0], self.config.horizon, self.spec.action.shape[0])
            noise = torch.randn(shape, generator=generator, device=cond.device)
        actions = self.normalizer.unnormalize("action", self.sample(cond, noise, num_steps))
        start = self.config.n_obs_steps - 1
        return self.clip_actions(actions[:, start : start + self.config.n_action_steps])
