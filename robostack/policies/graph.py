"""The module a policy's ONNX graph is traced from, for families whose graph is their ``predict_chunk``."""

from __future__ import annotations

import torch
from torch import nn


class ChunkGraph(nn.Module):
    """Positional inputs, as the ONNX tracer needs them: (obs_1, ..., obs_n[, noise]) -> executed action chunk."""

    def __init__(self, policy: nn.Module, keys: list[str], steps: int | None) -> None:
        super().__init__()
        self.policy = policy
        self.keys = keys
        self.steps = steps
        self.noise_input = bool(policy.takes_noise)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs_inputs = inputs[:-1] if self.noise_input else inputs
        obs = dict(zip(self.keys, obs_inputs, strict=True))
        noise = inputs[-1] if self.noise_input else None
        return self.policy.predict_chunk(obs, noise=noise, num_steps=self.steps)
