"""Normalisation inside the policy: statistics are buffers, saved with the weights and applied in ``forward``.

Low-dim keys map to [-1, 1] per dimension with the data's min/max (Diffusion Policy's ``limits`` mode); a constant
dimension maps to 0. Images (uint8) are scaled to [0, 1]. A key without statistics is an error, never a silent
pass-through (LeRobot issue #4415 is exactly that bug).
"""

from __future__ import annotations

import torch
from torch import nn

from robostack.data.normalize import KeyStats
from robostack.errors import RobostackError


def _buffer_name(key: str) -> str:
    return key.replace("/", "__")


class Normalizer(nn.Module):
    def __init__(self, stats: dict[str, KeyStats], keys: list[str], eps: float = 1e-6) -> None:
        super().__init__()
        missing = [k for k in keys if k not in stats]
        if missing:
            raise RobostackError(f"no normalisation statistics for key(s) {', '.join(missing)}")
        self.keys = list(keys)
        for k in keys:
            lo = torch.as_tensor(stats[k].min, dtype=torch.float32)
            hi = torch.as_tensor(stats[k].max, dtype=torch.float32)
            span = hi - lo
            scale = torch.where(span > eps, 2.0 / span.clamp_min(eps), torch.zeros_like(span))
            offset = torch.where(span > eps, -1.0 - lo * scale, -(lo * 0.0))
            self.register_buffer(f"{_buffer_name(k)}__scale", scale)
            self.register_buffer(f"{_buffer_name(k)}__offset", offset)
            self.register_buffer(f"{_buffer_name(k)}__min", lo)
            self.register_buffer(f"{_buffer_name(k)}__max", hi)

    def stat(self, key: str, what: str) -> torch.Tensor:
        """One statistic buffer of ``key``: ``min``, ``max``, or the normalising ``scale`` and ``offset``."""
        try:
            return getattr(self, f"{_buffer_name(key)}__{what}")
        except AttributeError:
            raise RobostackError(f"no normalisation statistics for key '{key}'") from None

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return x * self.stat(key, "scale") + self.stat(key, "offset")

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        lo, hi = self.stat(key, "min"), self.stat(key, "max")
        # One multiply-add whose coefficients depend on buffers only (an exported graph folds them to constants);
        # constant dimensions get scale 0 and come back as their constant value.
        half = torch.where(hi - lo > 1e-6, 0.5 * (hi - lo), torch.zeros_like(lo))
        return y * half + (lo + half)
