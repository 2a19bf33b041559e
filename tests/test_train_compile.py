"""The training compile options (robostack.train.compiled) leave values and gradients where eager PyTorch puts them.

``TRAIN_COMPILE_OPTIONS`` turns off Inductor's per-call stride checks of external kernels' outputs; this test is
where a wrong stride prediction for the U-Net's convolutions (channels-last, batched) would show instead."""

from __future__ import annotations

import torch
from torch import nn

from robostack.policies.unet1d import ConditionalResidualBlock1D, store_conv_weights_channels_last
from robostack.train.adamw import same_layout
from robostack.train.compiled import TRAIN_COMPILE_OPTIONS, compile_for_training


class Level(nn.Module):
    """One U-Net level's kinds of layers: a FiLM residual block with a channel change, down and up again."""

    def __init__(self) -> None:
        super().__init__()
        self.block = ConditionalResidualBlock1D(4, 16, cond_dim=12, kernel=5, groups=8, film_scale=True)
        # the U-Net's down and up sampling layers
        self.down = nn.Conv1d(16, 16, 3, 2, 1)
        self.up = nn.ConvTranspose1d(16, 16, 4, 2, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(self.block(x, cond)))


def test_compiled_training_options_match_eager_values_and_gradients():
    assert TRAIN_COMPILE_OPTIONS == {"size_asserts": False}
    torch.manual_seed(0)
    eager = Level()
    ours = Level()
    ours.load_state_dict(eager.state_dict())
    assert store_conv_weights_channels_last(ours) == 2  # what the trainer does before compiling
    x = torch.randn(32, 4, 16)  # a training batch: the batched, channels-last convolution path
    cond = torch.randn(32, 12)
    compiled = compile_for_training(ours)
    out_c, out_e = compiled(x, cond), eager(x, cond)
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-4)
    out_c.square().mean().backward()
    out_e.square().mean().backward()
    for (name, p), q in zip(ours.named_parameters(), eager.parameters(), strict=True):
        assert p.grad is not None and same_layout(p.grad, p), name
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
