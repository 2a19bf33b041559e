"""Several same-shaped ``ConditionalUnet1D`` networks evaluated as one graph: every layer's normalisation,
activation, FiLM and slicing nodes run once over a leading parent axis; each parent keeps its own 2-D matrix
product (onnxruntime pre-packs a constant 2-D weight once, not a stacked 3-D one).

Why: a composite (GPC) scores the same noisy sample with every parent at every denoising step. At a robot's batch
of 1 the U-Net's cost is mostly not its arithmetic but its many small graph nodes (an onnxruntime profile of the
push U-Net: 7% of kernel time in matrix products, the rest in Add, Slice, Unsqueeze, Mul ... nodes), so the
parents share every node they can. Layout inside is time-major (P, B, T, C), so a convolution is its K shifted time
slices concatenated along channels and one matrix product, with no transposes between layers, and every shape is a
Python int, so the exported graph carries no shape arithmetic. With one network (P = 1) this is also the form every
U-Net exports in (``ConditionalUnet1D.forward`` under ONNX export): fewer nodes than the eager layout.
Eager PyTorch keeps the usual forward. Every operation is the networks' own, exactly: ``tests/test_gpc.py`` checks
the stacked output against separate calls, and export parity covers the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robostack.policies.activations import Mish

# Duck-typed on ``policies.unet1d``'s modules (ConditionalUnet1D, its residual and conv blocks) rather than importing
# them: unet1d's forward calls this module under ONNX export, and modules here import one way only.


def can_stack(nets: list[nn.Module]) -> bool:
    """True when every net is a ``ConditionalUnet1D`` with the same parameter names and shapes (and so the same
    architecture: levels, kernel, groups, FiLM form, action and conditioning widths)."""
    if len(nets) < 2 or not all(type(n).__name__ == "ConditionalUnet1D" for n in nets):
        return False
    shapes = [[(k, tuple(v.shape)) for k, v in n.state_dict().items()] for n in nets]
    flags = [[(b.film_scale, b.blocks[0].block[1].num_groups) for b in _res_blocks(n)] for n in nets]
    return all(s == shapes[0] for s in shapes) and all(f == flags[0] for f in flags)


def _res_blocks(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if type(m).__name__ == "ConditionalResidualBlock1D"]


def _matmul(x: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
    """x (P, ..., in) times parent p's 2-D weight (in, out) for each p. One 2-D product per parent rather than one
    batched product over stacked weights: onnxruntime pre-packs a constant 2-D MatMul weight once and not a stacked
    one (benchmarks/ort_stacked_matmul.py: 1.31x slower stacked), while every other node stays shared."""
    if len(ws) == 1:
        return torch.matmul(x, ws[0])
    return torch.stack([torch.matmul(x[i], w) for i, w in enumerate(ws)])


def _linear(layers: list[nn.Linear], h: torch.Tensor) -> torch.Tensor:
    """(P, B, in) -> (P, B, out), parent p through its own layer."""
    b = torch.stack([lin.bias for lin in layers])[:, None, :]
    return _matmul(h, [lin.weight.t() for lin in layers]) + b


def _conv(convs: list[nn.Conv1d], x: torch.Tensor, t: int) -> torch.Tensor:
    """Conv1d (any kernel, stride, zero padding) on time-major (P, B, T, C) -> (P, B, T', O); ``t`` = T as a Python
    int (a traced ``x.shape`` would put shape arithmetic in the exported graph at every layer)."""
    c0 = convs[0]
    k, stride, pad = c0.kernel_size[0], c0.stride[0], c0.padding[0]
    if k == 1 and stride == 1:
        ws = [c.weight[:, :, 0].t() for c in convs]
    else:
        # Rows tap-major (tap i, then input channel), as the shifted slices are concatenated.
        ws = [c.weight.permute(2, 1, 0).reshape(k * c.in_channels, c.out_channels) for c in convs]
    t_out = (t + 2 * pad - k) // stride + 1
    xs = F.pad(x, (0, 0, pad, pad)) if pad else x
    if k > 1 or stride > 1:
        end = stride * (t_out - 1) + 1
        x = torch.cat([xs[:, :, i : i + end : stride] for i in range(k)], dim=-1)
    out = _matmul(x, ws)
    if c0.bias is not None:
        out = out + torch.stack([c.bias for c in convs])[:, None, None, :]
    return out


def _conv_transpose(convs: list[nn.ConvTranspose1d], x: torch.Tensor, t: int) -> torch.Tensor:
    """ConvTranspose1d(C, O, 4, stride 2, padding 1) on (P, B, T, C) -> (P, B, 2T, O).

    Output 2j reads inputs j (tap 1) and j - 1 (tap 3); output 2j + 1 reads j + 1 (tap 0) and j (tap 2)."""
    c0 = convs[0]
    if (c0.kernel_size[0], c0.stride[0], c0.padding[0], c0.output_padding[0]) != (4, 2, 1, 0):
        raise ValueError("stacked transposed convolution covers kernel 4, stride 2, padding 1 only")
    xs = F.pad(x, (0, 0, 1, 1))
    prev, now, nxt = xs[:, :, 0:t], xs[:, :, 1 : t + 1], xs[:, :, 2 : t + 2]
    w_even = [torch.cat([c.weight[:, :, 1], c.weight[:, :, 3]], 0) for c in convs]
    w_odd = [torch.cat([c.weight[:, :, 0], c.weight[:, :, 2]], 0) for c in convs]
    even = _matmul(torch.cat([now, prev], dim=-1), w_even)
    odd = _matmul(torch.cat([nxt, now], dim=-1), w_odd)
    out = torch.stack([even, odd], dim=3).reshape(len(convs), -1, 2 * t, c0.out_channels)
    if c0.bias is not None:
        out = out + torch.stack([c.bias for c in convs])[:, None, None, :]
    return out


def _group_norm(norms: list[nn.GroupNorm], x: torch.Tensor, t: int) -> torch.Tensor:
    """GroupNorm over (time, channels of a group) on (P, B, T, C), each parent's affine."""
    p, g, c = len(norms), norms[0].num_groups, norms[0].num_channels
    h = x.reshape(p, -1, t, g, c // g)
    mean = h.mean(dim=(2, 4), keepdim=True)
    var = (h - mean).pow(2).mean(dim=(2, 4), keepdim=True)
    h = ((h - mean) / torch.sqrt(var + norms[0].eps)).reshape(p, -1, t, c)
    weight = torch.stack([n.weight for n in norms])[:, None, None, :]
    bias = torch.stack([n.bias for n in norms])[:, None, None, :]
    return h * weight + bias


def _conv_block(blocks: list[nn.Module], x: torch.Tensor, t: int) -> torch.Tensor:
    x = _conv([b.block[0] for b in blocks], x, t)
    return Mish()(_group_norm([b.block[1] for b in blocks], x, t))


def _res_block(blocks: list[nn.Module], x: torch.Tensor, cond: torch.Tensor, t: int) -> torch.Tensor:
    out = _conv_block([b.blocks[0] for b in blocks], x, t)
    film = _linear([b.cond_encoder[1] for b in blocks], Mish()(cond))[:, :, None, :]  # (P, B, 1, 2C or C)
    c = blocks[0].c_out
    out = film[..., :c] * out + film[..., c:] if blocks[0].film_scale else out + film
    out = _conv_block([b.blocks[1] for b in blocks], out, t)
    res = x if isinstance(blocks[0].residual, nn.Identity) else _conv([b.residual for b in blocks], x, t)
    return out + res


def stacked_unet(
    nets: list[nn.Module], sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor
) -> torch.Tensor:
    """sample (P, B, T, Da), timestep (P, B), global_cond (P, B, C) -> (P, B, T, Da): parent p's prediction is
    ``nets[p](sample[p], timestep[p], global_cond[p])`` (``can_stack(nets)`` must hold)."""
    p, t = len(nets), int(sample.shape[2])
    emb = nets[0].step_encoder[0](timestep.reshape(-1)).reshape(p, -1, nets[0].step_encoder[1].in_features)
    emb = _linear([n.step_encoder[3] for n in nets], Mish()(_linear([n.step_encoder[1] for n in nets], emb)))
    cond = torch.cat([emb, global_cond], dim=-1)
    x, skips = sample, []
    for level in range(len(nets[0].down)):
        mods = [n.down[level] for n in nets]
        x = _res_block([m[1] for m in mods], _res_block([m[0] for m in mods], x, cond, t), cond, t)
        skips.append(x)
        if not isinstance(mods[0][2], nn.Identity):
            x = _conv([m[2] for m in mods], x, t)
            t = (t + 1) // 2
    for i in range(len(nets[0].mid)):
        x = _res_block([n.mid[i] for n in nets], x, cond, t)
    for level in range(len(nets[0].up)):
        mods = [n.up[level] for n in nets]
        x = torch.cat([x, skips.pop()], dim=-1)
        x = _res_block([m[1] for m in mods], _res_block([m[0] for m in mods], x, cond, t), cond, t)
        x = _conv_transpose([m[2] for m in mods], x, t)
        t *= 2
    x = _conv_block([n.final[0] for n in nets], x, t)
    return _conv([n.final[1] for n in nets], x, t)
