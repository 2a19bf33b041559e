"""Learner speed of robostack's SAC against Stable-Baselines3's, gradient updates per second, ratios from one run.

Both learn from the same kind of replay (push's 10-d observation, 2-d action, random transitions) with batch 256,
2 critics of 256 x 256 and an actor of 256 x 256 (robostack's actor is the gaussian family's trunk: Linear +
LayerNorm + Mish; SB3's is Linear + ReLU), automatic temperature; robostack's critics here without LayerNorm to match
SB3's. Rounds alternate A and B in one process, so both meet the same phases of a shared machine. Also: the cost of
RLPD's 10-critic ensemble (LayerNorm on) against 2 critics, each learner also compiled (``sac.compile``; compiled
before timing), and the vector environment's steps per second with the policy in the loop.

    .venv/bin/python benchmarks/sac_learner.py [--updates 200] [--rounds 5] [--threads 2] [--out benchmarks/results/sac_learner.md]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from robostack.algos.sac import SACConfig, SACLearner
from robostack.data.normalize import KeyStats
from robostack.data.schema import FeatureSpec
from robostack.policies import PolicySpec, build_policy
from robostack.sim.vector_env import VectorEnv
from robostack.train.data import to_tensors
from robostack.utils.table import format_markdown

OBS, ACT, BATCH = {"obs/state": 4, "obs/object": 6}, 2, 256


def _actor() -> torch.nn.Module:
    spec = PolicySpec(
        obs={k: FeatureSpec("float32", (d,)) for k, d in OBS.items()},
        action=FeatureSpec("float32", (ACT,)),
        action_low=[-1.0] * ACT,
        action_high=[1.0] * ACT,
        control_rate_hz=20.0,
    )
    ks = lambda d: KeyStats(min=-np.ones(d), max=np.ones(d), mean=np.zeros(d), std=np.ones(d), count=1)  # noqa: E731
    stats = {**{k: ks(d) for k, d in OBS.items()}, "action": ks(ACT)}
    return build_policy(
        "gaussian", {"hidden_dims": [256, 256], "horizon": 1, "n_action_steps": 1}, spec, stats
    )


def _batches(n: int, rng: np.random.Generator) -> list[dict[str, torch.Tensor]]:
    out = []
    for _ in range(n):
        b = {k: rng.uniform(-1, 1, (BATCH, d)).astype(np.float32) for k, d in OBS.items()}
        b.update({"next/" + k: rng.uniform(-1, 1, (BATCH, d)).astype(np.float32) for k, d in OBS.items()})
        b["action"] = rng.uniform(-1, 1, (BATCH, ACT)).astype(np.float32)
        b["reward"] = -(rng.random(BATCH) < 0.05).astype(np.float32)
        b["terminated"] = rng.random(BATCH) < 0.01
        out.append(to_tensors(b, torch.device("cpu")))
    return out


def robostack_learner(cfg: SACConfig, batches: list) -> SACLearner:
    learner = SACLearner(cfg, _actor())
    learner.update(batches[:1])  # warm-up (and compiling, for a compiled learner)
    return learner


def robostack_rate(learner: SACLearner, updates: int, batches: list) -> float:
    t0 = time.perf_counter()
    for i in range(updates):
        learner.update([batches[i % len(batches)]])
    return updates / (time.perf_counter() - t0)


def flops_per_update(update) -> float:
    """Floating-point operations of one update as PyTorch's FLOP counter sees them (matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        update()
    return float(counter.get_total_flops())


def matmul_gflops() -> float:
    """What this CPU multiplies per second at the threads set: a large float32 matrix product, best of 5."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024**3 / best / 1e9


def sb3_model():
    import gymnasium as gym
    from stable_baselines3 import SAC

    class Box(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (sum(OBS.values()),), np.float32)
        action_space = gym.spaces.Box(-1, 1, (ACT,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(sum(OBS.values()), np.float32), {}

    model = SAC("MlpPolicy", Box(), batch_size=BATCH, policy_kwargs={"net_arch": [256, 256]}, device="cpu",
                learning_starts=0, buffer_size=100_000, ent_coef="auto")  # fmt: skip
    rng = np.random.default_rng(0)
    dim = sum(OBS.values())
    for _ in range(20_000 // 1000):
        obs = rng.uniform(-1, 1, (1000, dim)).astype(np.float32)
        for i in range(1000):
            model.replay_buffer.add(obs[i], obs[(i + 1) % 1000], rng.uniform(-1, 1, ACT), -float(rng.random() < 0.05),
                                    np.array([rng.random() < 0.01]), [{}])  # fmt: skip
    model._setup_learn(1, None)  # the logger and the learning-rate schedule, as learn() sets them up
    return model


def sb3_rate(model, updates: int) -> float:
    model.train(gradient_steps=1, batch_size=BATCH)  # warm-up
    t0 = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=BATCH)
    return updates / (time.perf_counter() - t0)


def env_rate(envs: int, steps: int) -> float:
    learner = SACLearner(SACConfig(critics=2, hidden=[256, 256]), _actor())
    with VectorEnv("push", envs, seed=3_000_000) as env:
        obs = env.reset()
        t0 = time.perf_counter()
        for _ in range(steps // envs):
            with torch.no_grad():
                a, _ = learner.sample_action(to_tensors({k: obs[k] for k in OBS}, torch.device("cpu")))
            obs = env.step(a.numpy()).obs
        return steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/sac_learner.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batches = _batches(50, np.random.default_rng(0))
    two = SACConfig(critics=2, hidden=[256, 256], layer_norm=False, batch_size=BATCH)
    ten = SACConfig(critics=10, hidden=[256, 256], layer_norm=True, batch_size=BATCH)
    two_ln = SACConfig(critics=2, hidden=[256, 256], layer_norm=True, batch_size=BATCH)
    model = sb3_model()
    compiled = lambda c: replace(c, compile=True)  # noqa: E731
    learners = {
        "robostack 2 critics": two, "robostack 2 critics + LN": two_ln, "robostack 10 critics + LN (RLPD)": ten,
        "robostack 2 critics, compiled": compiled(two), "robostack 2 critics + LN, compiled": compiled(two_ln),
        "robostack 10 critics + LN (RLPD), compiled": compiled(ten),
    }  # fmt: skip
    built = {k: robostack_learner(c, batches) for k, c in learners.items()}
    rates: dict[str, list[float]] = {"SB3 SAC 2 critics": [], **{k: [] for k in learners}}
    for r in range(args.rounds):
        rates["SB3 SAC 2 critics"].append(sb3_rate(model, args.updates))
        for k, learner in built.items():
            rates[k].append(robostack_rate(learner, args.updates, batches))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()), flush=True)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    rows = [(k, f"{v:.0f}", f"{min(rates[k]):.0f}-{max(rates[k]):.0f}") for k, v in med.items()]
    speed = med["robostack 2 critics"] / med["SB3 SAC 2 critics"]
    speed_c = med["robostack 2 critics, compiled"] / med["SB3 SAC 2 critics"]
    ensemble = med["robostack 2 critics + LN"] / med["robostack 10 critics + LN (RLPD)"]
    ensemble_c = med["robostack 2 critics + LN, compiled"] / med["robostack 10 critics + LN (RLPD), compiled"]
    rlpd_c = med["robostack 10 critics + LN (RLPD), compiled"] / med["robostack 10 critics + LN (RLPD)"]
    env_sps = {n: env_rate(n, 2000) for n in (1, 8)}
    # The ceiling: both learners are compute-bound matrix products, so updates/s x FLOPs per update is how close
    # each runs to what this CPU can multiply; a 2x lead needs half the FLOPs, not less overhead.
    ours = SACLearner(two, _actor())
    flops = {
        "robostack 2 critics": flops_per_update(lambda: ours.update([batches[0]])),
        "SB3 SAC 2 critics": flops_per_update(lambda: model.train(gradient_steps=1, batch_size=BATCH)),
    }
    lines = [
        f"robostack / SB3 (2 critics, same sizes): **{speed:.2f}x** the updates per second (goal >= 2x)",
        f"compiled (`sac.compile: true`): robostack / SB3 **{speed_c:.2f}x**; RLPD's 10-critic learner compiled "
        f"{rlpd_c:.2f}x the eager one's updates per second",
        f"10-critic ensemble costs **{ensemble:.2f}x** the time of 2 critics per update (goal <= 2.5x); "
        f"compiled {ensemble_c:.2f}x",
        *(
            f"{k}: {f / 1e6:.0f} MFLOP per update, {f * med[k] / 1e9:.0f} GFLOP/s achieved"
            for k, f in flops.items()
        ),
        f"a 1024 x 1024 float32 matrix product on this CPU: {matmul_gflops():.0f} GFLOP/s",
        *(
            f"VectorEnv push, {n} copies in process, policy sampling in the loop: {v:.0f} env steps/s"
            for n, v in env_sps.items()
        ),
    ]
    text = (
        f"# SAC learner speed ({time.strftime('%Y-%m-%d')}, {args.threads} threads, batch {BATCH}, "
        f"{args.updates} updates x {args.rounds} alternating rounds)\n\n`.venv/bin/python benchmarks/sac_learner.py "
        f"--updates {args.updates} --rounds {args.rounds} --threads {args.threads}`\n\n"
        + format_markdown(["learner", "updates/s (median)", "range over rounds"], rows)
        + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
    )  # fmt: skip
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
