"""Where a diffusion training step's convolution time goes: every convolution of the U-Net at the training batch,
timed forward and forward+backward in the layout LeRobot's Conv1d runs (contiguous N,C,L) and in the one
robostack's compiled step runs (height-1 Conv2d, channels-last), with the arithmetic rate each reaches.

    .venv/bin/python benchmarks/conv_layers.py [--down-dims 32,64,128] [--batch 64] [--threads 1]

The shapes are recorded from a real forward pass of the policy's U-Net (push task shapes), so the per-step sums are
what one training step's convolutions cost; a step also contains normalisation, activations and the optimiser.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F

from robostack.policies.unet1d import MatmulConv1d
from robostack.utils.table import format_table


def conv_shapes(down_dims: list[int], batch: int) -> Counter:
    """(B, C_in, C_out, L, K) of every stride-1 convolution in one U-Net forward, with multiplicity."""
    import train_step  # benchmarks/ sits on sys.path when this file runs as a script

    policy = train_step.make_policy(down_dims).train()
    seen: Counter = Counter()

    def hook(mod: MatmulConv1d, args: tuple) -> None:
        x = args[0]
        seen[(x.shape[0], mod.in_channels, mod.out_channels, x.shape[-1], mod.kernel_size[0])] += 1

    handles = [m.register_forward_pre_hook(hook) for m in policy.modules() if isinstance(m, MatmulConv1d)]
    with torch.no_grad():
        policy.compute_loss(train_step.random_batch(batch))
    for h in handles:
        h.remove()
    return seen


def time_us(fn, iters: int) -> float:
    for _ in range(5):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters * 1e6


def layer_times(
    b: int, ci: int, co: int, length: int, k: int, channels_last: bool, iters: int
) -> tuple[float, float]:
    """Forward and forward+backward microseconds of one convolution (weight and input gradients)."""
    x = torch.randn(b, ci, 1, length)
    w = torch.randn(co, ci, 1, k)
    if channels_last:
        x, w = (
            x.contiguous(memory_format=torch.channels_last),
            w.contiguous(memory_format=torch.channels_last),
        )
    x.requires_grad_()
    w.requires_grad_()
    pad = (0, k // 2)

    def fwd() -> torch.Tensor:
        return F.conv2d(x, w, None, padding=pad)

    def fwd_bwd() -> None:
        y = fwd()
        torch.autograd.grad(y, (x, w), torch.ones_like(y))

    with torch.no_grad():
        t_f = time_us(fwd, iters)
    return t_f, time_us(fwd_bwd, iters)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--down-dims", default="32,64,128")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dims = [int(x) for x in args.down_dims.split(",")]
    rows, totals = [], {False: [0.0, 0.0], True: [0.0, 0.0]}
    for (b, ci, co, length, k), n in sorted(conv_shapes(dims, args.batch).items()):
        flops = 2.0 * b * length * ci * co * k  # multiply-adds of the forward; backward does twice as many
        cells = [f"{ci}->{co}, L={length}, K={k}", str(n)]
        for cl in (False, True):
            t_f, t_fb = layer_times(b, ci, co, length, k, cl, args.iters)
            totals[cl][0] += n * t_f
            totals[cl][1] += n * t_fb
            cells += [f"{t_f:.0f}", f"{t_fb:.0f}", f"{3 * flops / t_fb / 1e3:.0f}"]
        rows.append(cells)
    rows.append(
        ["per training step (x count)", ""]
        + [
            c
            for cl in (False, True)
            for c in (f"{totals[cl][0] / 1e3:.1f} ms", f"{totals[cl][1] / 1e3:.1f} ms", "")
        ]
    )
    print(
        f"U-Net {dims}, batch {args.batch}, {args.threads} thread(s); times in microseconds, GFLOP/s of fwd+bwd"
    )
    print(
        format_table(
            [
                "convolution",
                "count",
                "N,C,L fwd",
                "fwd+bwd",
                "GFLOP/s",
                "channels-last fwd",
                "fwd+bwd",
                "GFLOP/s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
