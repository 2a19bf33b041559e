"""Time one diffusion-policy training step three ways in the same process: eager with for-each AdamW (how LeRobot
trains), eager with fused AdamW (robostack's default) and torch.compile'd loss + fused AdamW (``--compile=true``).

    .venv/bin/python benchmarks/train_step.py [--down-dims 32,64,128] [--batch 64] [--steps 30] [--threads 1]

Random batches of the push task's shapes; prints ms per step, samples/s and the ratios to the first row, and the
one-off compile time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec
from robostack.policies.base import PolicySpec
from robostack.policies.checkpoint import build_policy
from robostack.utils.table import format_table


def make_policy(down_dims: list[int]) -> torch.nn.Module:
    obs = {"obs/state": FeatureSpec("float32", (4,)), "obs/object": FeatureSpec("float32", (6,))}
    spec = PolicySpec(obs, FeatureSpec("float32", (2,)), [-1.0, -1.0], [1.0, 1.0], 20.0)
    stats = {
        k: KeyStats(
            min=-np.ones(f.shape), max=np.ones(f.shape), mean=np.zeros(f.shape), std=np.ones(f.shape), count=1
        )
        for k, f in {**obs, "action": spec.action}.items()
    }
    cfg = {"type": "diffusion", "unet": {"down_dims": down_dims, "step_embed_dim": 64, "kernel_size": 5}}
    return build_policy("diffusion", cfg, spec, stats)


def time_steps(loss_fn, opt, batch, steps: int) -> tuple[float, float]:
    def step() -> None:
        loss, _ = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # first step: compiles where the loss is compiled
    first = time.perf_counter() - t0
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--down-dims", default="32,64,128")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dims = [int(x) for x in args.down_dims.split(",")]
    torch.manual_seed(0)
    batch = {
        "obs/state": torch.randn(args.batch, 16, 4),
        "obs/object": torch.randn(args.batch, 16, 6),
        "action": torch.randn(args.batch, 16, 2),
    }
    rows, base = [], None
    for name, fused, compiled in [
        ("eager, for-each AdamW", False, False),
        ("eager, fused AdamW", True, False),
        ("torch.compile, fused AdamW", True, True),
    ]:
        policy = make_policy(dims).train()
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, fused=fused)
        loss_fn = torch.compile(policy.compute_loss) if compiled else policy.compute_loss
        per_step, first = time_steps(loss_fn, opt, batch, args.steps)
        base = base or per_step
        rows.append(
            (name, f"{per_step * 1e3:.1f}", f"{args.batch / per_step:.0f}", f"{base / per_step:.2f}x",
             f"{first:.1f}")
        )  # fmt: skip
    params = sum(p.numel() for p in make_policy(dims).parameters()) / 1e6
    print(f"U-Net {dims} ({params:.2f} M parameters), batch {args.batch}, {args.threads} thread(s)")
    print(format_table(["step", "ms/step", "samples/s", "vs first row", "first step s"], rows))


if __name__ == "__main__":
    main()
