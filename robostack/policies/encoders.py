"""Observation encoders: normalised low-dim vectors, and camera images through a ResNet-18-style network.

The image encoder follows Diffusion Policy's recipe: ResNet-18 from scratch with GroupNorm instead of BatchNorm
(BatchNorm and EMA do not mix), spatial-softmax keypoints instead of global pooling, random crops in training and
a centre crop at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robostack.policies.normalizer import Normalizer


def _grid(n: int) -> list[float]:
    """torch.linspace(-1, 1, n) as Python floats."""
    return [-1.0] if n == 1 else [-1.0 + 2.0 * i / (n - 1) for i in range(n)]


class SpatialSoftmax(nn.Module):
    """Expected 2D image coordinates of ``num_kp`` learned keypoint maps: (B, C, H, W) -> (B, 2 * num_kp)."""

    def __init__(self, channels: int, num_kp: int = 32) -> None:
        super().__init__()
        self.kp = nn.Conv2d(channels, num_kp, 1)
        self.num_kp = num_kp
        self._grid_cache: dict[tuple[int, int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def _grids(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinate grids, made once per size and device: constants in an exported graph (ONNX's Range with
        one step divides by zero), and no host-to-device copy inside a captured CUDA graph."""
        key = (h, w, device)
        if key not in self._grid_cache:
            self._grid_cache[key] = (
                torch.tensor(_grid(h), device=device),
                torch.tensor(_grid(w), device=device),
            )
        return self._grid_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.kp(x)
        b, k, h, w = x.shape
        ys, xs = self._grids(h, w, x.device)
        attn = F.softmax(x.flatten(2), dim=-1).view(b, k, h, w)
        ex = (attn.sum(2) * xs).sum(-1)
        ey = (attn.sum(3) * ys).sum(-1)
        return torch.cat([ex, ey], dim=-1)


class ResNet18Encoder(nn.Module):
    def __init__(self, image_size: int, feature_dim: int = 64, crop_ratio: float = 0.9) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(max(1, c // 16), c))
        self.backbone = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
        self.crop = max(8, int(round(image_size * crop_ratio)))
        with torch.no_grad():
            c = self.backbone(torch.zeros(1, 3, self.crop, self.crop)).shape[1]
        self.pool = SpatialSoftmax(c)
        self.out = nn.Linear(2 * self.pool.num_kp, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, H, W, 3) uint8 or float in [0, 255] -> (N, feature_dim)."""
        x = images.permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        if self.training:
            top = int(torch.randint(0, h - self.crop + 1, (1,)))
            left = int(torch.randint(0, w - self.crop + 1, (1,)))
        else:
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
        x = x[..., top : top + self.crop, left : left + self.crop]
        return self.out(self.pool(self.backbone(x)))


class ObsEncoder(nn.Module):
    """(B, T_o, ...) per key -> one global conditioning vector (B, T_o * per-step features)."""

    def __init__(
        self,
        normalizer: Normalizer,
        lowdim_keys: list[str],
        image_keys: dict[str, int],
        image_feature_dim: int = 64,
        crop_ratio: float = 0.9,
        lowdim_noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.lowdim_noise = lowdim_noise
        self.lowdim_keys = list(lowdim_keys)
        self.image_keys = list(image_keys)
        self.image_encoders = nn.ModuleDict(
            {
                k.replace("/", "__"): ResNet18Encoder(size, image_feature_dim, crop_ratio)
                for k, size in image_keys.items()
            }
        )

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Shapes are written with -1 for the batch so that exported graphs keep constant reshape targets.
        t = obs[self.lowdim_keys[0] if self.lowdim_keys else self.image_keys[0]].shape[1]
        parts = []
        for k in self.lowdim_keys:
            x = self.normalizer.normalize(k, obs[k].float())
            if self.training and self.lowdim_noise > 0:
                x = x + self.lowdim_noise * torch.randn_like(x)
            parts.append(x.unsqueeze(-1) if x.dim() == 2 else (x.flatten(2) if x.dim() > 3 else x))
        for k in self.image_keys:
            feat = self.image_encoders[k.replace("/", "__")](obs[k].flatten(0, 1))
            parts.append(feat.unflatten(0, (-1, t)))
        return torch.cat(parts, dim=-1).flatten(1)
