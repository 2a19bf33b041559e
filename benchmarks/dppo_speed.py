"""Where a DPPO iteration's time goes, and what the policy costs the simulator, ratios from one run.

For one diffusion policy (a behaviour-cloned run) on its task, in N simulated copies stepped together:

- simulator alone: the copies executing random action chunks of the policy's length (T_a actions per decision);
- policy in the loop: DPPO's rollout (the stochastic sampler over all copies at once -- one network forward per
  denoising step for every copy -- plus the critic), the same number of decisions;
- per-copy inference: the same sampler called once per copy (what batching saves);
- the PPO update on the rollout (epochs x minibatches over the K' fine-tuned denoising steps).

Rounds alternate the variants, so each meets the same phases of a shared machine; medians are reported.

    .venv/bin/python benchmarks/dppo_speed.py --policy runs/bench-dppo/runs/push-diffusion-noisy20 [--envs 8] \
        [--decisions 32] [--rounds 3] [--threads 2] [--out benchmarks/results/dppo_speed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from robostack.algos.chunk_rollout import chunk_rollout
from robostack.algos.dppo import DPPOConfig, DPPOLearner
from robostack.policies.checkpoint import load_policy
from robostack.policies.loading import resolve_policy_folder
from robostack.sim.vector_env import VectorEnv
from robostack.train.data import to_tensors
from robostack.utils.table import format_markdown


def history(first: dict[str, np.ndarray], t_o: int) -> dict[str, np.ndarray]:
    return {k: np.repeat(v[:, None], t_o, axis=1) for k, v in first.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", required=True)
    ap.add_argument("--task", default="push")
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument(
        "--decisions", type=int, default=32, help="decisions per copy per round (one DPPO iteration)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--epochs", type=int, default=10, help="PPO epochs per update (DPPO's Robomimic setting: 10)"
    )
    ap.add_argument("--out", default="benchmarks/results/dppo_speed.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    policy = load_policy(resolve_policy_folder(args.policy), "cpu").train()
    cfg = DPPOConfig(from_run=args.policy, task=args.task, envs=args.envs, steps_per_iteration=args.decisions,
                     epochs=args.epochs)  # fmt: skip
    load = os.getloadavg()[0]
    learner = DPPOLearner(cfg, policy)
    t_o, t_a = policy.config.n_obs_steps, policy.config.n_action_steps
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {
        k: [] for k in ("sim", "rollout", "rollout_policy", "rollout_sim", "per_copy", "update")
    }
    steps: dict[str, list[int]] = {"sim": [], "rollout": []}
    with VectorEnv(args.task, args.envs, 9_000_000, 0) as env:
        hist = history(env.reset(), t_o)
        dim = env.spec.action.shape[0]
        for _ in range(args.rounds):
            t0, n = time.perf_counter(), 0
            for _ in range(args.decisions):
                step = env.step_chunk(
                    rng.uniform(-1, 1, (args.envs, t_a, dim)).astype(np.float32), history=t_o
                )
                n += int(step.executed.sum())
            times["sim"].append(time.perf_counter() - t0)
            steps["sim"].append(n)
            hist = step.obs_history
            t0 = time.perf_counter()
            ro, hist = chunk_rollout(env, hist, args.decisions, learner, gen, "cpu")
            times["rollout"].append(time.perf_counter() - t0)
            times["rollout_policy"].append(ro.policy_s)
            times["rollout_sim"].append(ro.sim_s)
            steps["rollout"].append(ro.env_steps)
            obs = to_tensors(hist, torch.device("cpu"))
            t0 = time.perf_counter()
            for _ in range(args.decisions):
                for i in range(args.envs):
                    learner.act({k: v[i : i + 1] for k, v in obs.items()}, gen)
            times["per_copy"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            learner.update(ro, rng)
            times["update"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    sim_sps = statistics.median(s / t for s, t in zip(steps["sim"], times["sim"], strict=True))
    loop_sps = statistics.median(s / t for s, t in zip(steps["rollout"], times["rollout"], strict=True))
    iteration = med["rollout"] + med["update"]
    rows = [
        ("simulator alone (random chunks)", f"{sim_sps:.0f}", "1.00x", "-"),
        ("DPPO rollout (policy + critic in the loop)", f"{loop_sps:.0f}", f"{loop_sps / sim_sps:.2f}x", f"{med['rollout']:.2f}"),
        ("  of which policy + critic", "", "", f"{med['rollout_policy']:.2f}"),
        ("  of which simulation", "", "", f"{med['rollout_sim']:.2f}"),
        ("same decisions, one sampler call per copy", "", f"batched is {med['per_copy'] / med['rollout_policy']:.1f}x faster",
         f"{med['per_copy']:.2f}"),
        ("PPO update (epochs x minibatches, K' steps)", "", "", f"{med['update']:.2f}"),
        ("one DPPO iteration (rollout + update)", "", "", f"{iteration:.2f}"),
    ]  # fmt: skip
    head = f"{args.task}, {args.envs} copies x {args.decisions} decisions of {t_a} actions, K = {learner.steps}, " \
           f"K' = {cfg.ft_denoising_steps}, {cfg.epochs} epochs of minibatches of {cfg.batch_size}, {args.threads} threads, " \
           f"median of {args.rounds} rounds; load average {load:.1f} on {os.cpu_count()} cores at the start"  # fmt: skip
    table = format_markdown(["", "env steps / s", "vs simulator", "seconds"], rows)
    print(head + "\n\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shares = {k: med[k] / iteration for k in ("rollout_policy", "rollout_sim", "update")}
    out.write_text(
        f"# DPPO speed\n\n{head}. Command: `.venv/bin/python benchmarks/dppo_speed.py --policy {args.policy} "
        f"--envs {args.envs} --decisions {args.decisions} --rounds {args.rounds} --threads {args.threads} --epochs {args.epochs}`\n\n{table}\n\n"
        f"Share of an iteration: policy + critic {100 * shares['rollout_policy']:.0f}%, simulation "
        f"{100 * shares['rollout_sim']:.0f}%, update {100 * shares['update']:.0f}%. Steps counted as executed (a chunk cut by "
        "its episode's end executes fewer than T_a).\n"
    )
    out.with_suffix(".json").write_text(json.dumps({"median_s": med, "sim_steps_per_s": sim_sps,
                                                    "loop_steps_per_s": loop_sps}, indent=1))  # fmt: skip
    print(f"-> {out}")


if __name__ == "__main__":
    main()
