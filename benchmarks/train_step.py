"""Time one diffusion-policy training step in the same process: LeRobot's DiffusionPolicy (same U-Net, for-each
AdamW, as `robostack bench` trains it), and robostack eager with for-each AdamW, eager with fused AdamW (the default)
and the torch.compile'd loss + fused AdamW (``--compile=true``).

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

OBS = {"obs/state": FeatureSpec("float32", (4,)), "obs/object": FeatureSpec("float32", (6,))}
SPEC = PolicySpec(OBS, FeatureSpec("float32", (2,)), [-1.0, -1.0], [1.0, 1.0], 20.0)
STATS = {
    k: KeyStats(
        min=-np.ones(f.shape), max=np.ones(f.shape), mean=np.zeros(f.shape), std=np.ones(f.shape), count=1
    )
    for k, f in {**OBS, "action": SPEC.action}.items()
}


def policy_config(down_dims: list[int]) -> dict:
    return {"type": "diffusion", "unet": {"down_dims": down_dims, "step_embed_dim": 64, "kernel_size": 5}}


def make_policy(down_dims: list[int]) -> torch.nn.Module:
    return build_policy("diffusion", policy_config(down_dims), SPEC, STATS)


def random_batch(batch_size: int, horizon: int = 16) -> dict[str, torch.Tensor]:
    """A training batch of the push task's shapes (values do not change a step's cost)."""
    return {k: torch.randn(batch_size, horizon, *f.shape) for k, f in {**OBS, "action": SPEC.action}.items()}


def lerobot_loss(down_dims: list[int]):
    from robostack.compare.lerobot_diffusion import LeRobotDiffusion

    model = LeRobotDiffusion(SPEC, STATS, policy_config(down_dims))
    model.train()
    return model.parameters(), lambda batch: (model.compute_loss(batch), {})


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
    batch = random_batch(args.batch)
    rows, base = [], None
    for name, fused, compiled in [
        ("LeRobot DiffusionPolicy, for-each AdamW", False, False),
        ("robostack eager, for-each AdamW", False, False),
        ("robostack eager, fused AdamW", True, False),
        ("robostack torch.compile, fused AdamW", True, True),
    ]:
        if name.startswith("LeRobot"):
            params, loss_fn = lerobot_loss(dims)
        else:
            policy = make_policy(dims).train()
            params = policy.parameters()
            loss_fn = torch.compile(policy.compute_loss) if compiled else policy.compute_loss
        opt = torch.optim.AdamW(params, lr=1e-4, fused=fused)
        per_step, first = time_steps(loss_fn, opt, batch, args.steps)
        base = base or per_step
        rows.append(
            (name, f"{per_step * 1e3:.1f}", f"{args.batch / per_step:.0f}", f"{base / per_step:.2f}x",
             f"{first:.1f}")
        )  # fmt: skip
    params = sum(p.numel() for p in make_policy(dims).parameters()) / 1e6
    print(f"U-Net {dims} ({params:.2f} M parameters), batch {args.batch}, {args.threads} thread(s)")
    print(format_table(["step", "ms/step", "samples/s", "speed-up vs LeRobot", "first step s"], rows))


if __name__ == "__main__":
    main()
