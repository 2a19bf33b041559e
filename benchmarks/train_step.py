"""Time one diffusion-policy training step in the same process: LeRobot's DiffusionPolicy (same U-Net, for-each
AdamW, as `robostack bench` trains it), and robostack eager with for-each AdamW, eager with fused AdamW (the default)
and the torch.compile'd loss + fused AdamW + the EMA update (what ``robostack train --compile=true`` runs per step).

    .venv/bin/python benchmarks/train_step.py [--down-dims 32,64,128] [--batch 64] [--threads 1]
                                              [--rounds 12] [--steps 6]

Random batches of the push task's shapes. The variants take turns, ``--steps`` steps each per round, for
``--rounds`` rounds, because this project's virtual CPUs drift by 20-30% over minutes: timed one after the other,
the ratios moved with whichever variant ran in a slow phase. Prints the median ms per step, the range over rounds,
samples/s, the ratios to the first row, and the one-off first step (the compile, where compiled).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec
from robostack.policies.base import PolicySpec
from robostack.policies.checkpoint import build_policy
from robostack.policies.unet1d import store_conv_weights_channels_last
from robostack.train.adamw import SharedStepAdamW
from robostack.train.compiled import compile_for_training
from robostack.train.optim import EMAUpdater
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


def make_step(loss_fn, opt, after=None):
    def step(batch: dict[str, torch.Tensor]) -> None:
        loss, _ = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after is not None:
            after()

    return step


def interleaved(steps: dict[str, object], batch, rounds: int, per_round: int) -> dict[str, list[float]]:
    """ms per step of each variant in every round; the variants take turns, so a slow phase of the (shared,
    virtualised) CPU lands on all of them instead of on whichever ran during it."""
    out: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step(batch)  # re-warm caches after the other variants ran
            t0 = time.perf_counter()
            for _ in range(per_round):
                step(batch)
            out[name].append((time.perf_counter() - t0) / per_round * 1e3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--down-dims", default="32,64,128")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--steps", type=int, default=6, help="steps per variant per round")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dims = [int(x) for x in args.down_dims.split(",")]
    torch.manual_seed(0)
    batch = random_batch(args.batch)
    steps, first = {}, {}
    for name, fused, compiled in [
        ("LeRobot DiffusionPolicy, for-each AdamW", False, False),
        ("robostack eager, for-each AdamW", False, False),
        ("robostack eager, fused AdamW", True, False),
        ("robostack torch.compile, fused AdamW + EMA (robostack train)", True, True),
    ]:
        after = None
        if name.startswith("LeRobot"):
            params, loss_fn = lerobot_loss(dims)
        else:
            policy = make_policy(dims).train()
            loss_fn = policy.compute_loss
            if compiled:  # what robostack train does per step in a compiled CPU run
                store_conv_weights_channels_last(policy)
                loss_fn = compile_for_training(policy.compute_loss)
                ema = EMAUpdater(copy.deepcopy(policy).requires_grad_(False), policy, 0.75, 0.9999)
                after = lambda ema=ema: ema.update(1000)  # noqa: E731
            params = policy.parameters()
        # robostack train's optimiser: torch's fused AdamW with one step counter for all parameters
        opt = SharedStepAdamW(params, lr=1e-4) if fused else torch.optim.AdamW(params, lr=1e-4)
        steps[name] = make_step(loss_fn, opt, after)
        t0 = time.perf_counter()
        steps[name](batch)  # first step: compiles where the loss is compiled
        first[name] = time.perf_counter() - t0
        for _ in range(2):
            steps[name](batch)
    times = interleaved(steps, batch, args.rounds, args.steps)
    med = {name: statistics.median(v) for name, v in times.items()}
    base = next(iter(med.values()))
    rows = [
        (name, f"{med[name]:.1f}", f"{min(v):.1f}-{max(v):.1f}", f"{args.batch / med[name] * 1e3:.0f}",
         f"{base / med[name]:.2f}x", f"{first[name]:.1f}")
        for name, v in times.items()
    ]  # fmt: skip
    params = sum(p.numel() for p in make_policy(dims).parameters()) / 1e6
    print(
        f"U-Net {dims} ({params:.2f} M parameters), batch {args.batch}, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds of {args.steps} steps per variant (medians)"
    )
    print(
        format_table(
            ["step", "ms/step", "rounds' range", "samples/s", "speed-up vs LeRobot", "first step s"], rows
        )
    )


if __name__ == "__main__":
    main()
