"""GPC latency: one composed chunk (ONNX, CPU, 1 thread, batch 1) against the sum of its parents' chunk latencies.

Composes the parents at the given weights, exports the parents and the composite with their configured steps, and
times ``predict_chunk`` through the runtime (the ROS node's call) in alternating rounds (A, B, composite, A, ...) so
all three meet the same phases of a shared machine. The composite runs every parent's network at every step of the
shared sampler, so the sum of the parents is the cost to beat; what it saves is the per-call runtime overhead.

    .venv/bin/python benchmarks/gpc_latency.py --policy runs/bench-gpc/runs/push-diffusion-b \
        --policy runs/bench-gpc/runs/push-flow-b --weights 0.5,0.5 [--iters 30 --rounds 5] \
        [--out benchmarks/results/gpc_latency.md]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import numpy as np

from robostack.export import ExportConfig, export_policy
from robostack.policies.composition import compose, parse_weights, save_composite
from robostack.runtime.loader import load
from robostack.utils.table import format_markdown


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", action="append", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        save_composite(*compose(args.policy, parse_weights(args.weights)), t / "composite")
        models = {}
        for i, p in enumerate(args.policy):
            export_policy(ExportConfig(policy=p, out=str(t / f"parent{i}.onnx")))
            models[f"parent {i} ({Path(p).name})"] = t / f"parent{i}.onnx"
        rep = export_policy(ExportConfig(policy=str(t / "composite"), out=str(t / "composite.onnx")))
        models[f"composite {args.weights}"] = t / "composite.onnx"
        runners = {}
        for name, path in models.items():
            pol = load(path, "cpu", "onnxruntime", threads=1)
            obs = pol.example_obs()
            runners[name] = (pol, obs)
            for _ in range(3):
                pol.predict_chunk(obs)
        times: dict[str, list[float]] = {n: [] for n in runners}
        for _ in range(args.rounds):
            for name, (pol, obs) in runners.items():
                for _ in range(args.iters):
                    t0 = time.perf_counter()
                    pol.predict_chunk(obs)
                    times[name].append(1e3 * (time.perf_counter() - t0))
    p50 = {n: float(np.percentile(v, 50)) for n, v in times.items()}
    names = list(p50)
    parents_sum = sum(p50[n] for n in names[:-1])
    comp = p50[names[-1]]
    rows = [(n, f"{p50[n]:.2f}", f"{np.percentile(times[n], 99):.2f}") for n in names]
    rows.append(("sum of the parents", f"{parents_sum:.2f}", ""))
    verdict = (
        f"composite / sum of parents = {comp / parents_sum:.2f} "
        f"({'goal <= 1 met' if comp <= parents_sum else 'goal <= 1 missed'}); export parity {rep.parity_max_abs:.1e}"
    )
    table = format_markdown(["model (ONNX, CPU, 1 thread, batch 1)", "chunk p50 ms", "p99 ms"], rows)
    print(table + "\n\n" + verdict)
    if args.out:
        cmd = "python benchmarks/gpc_latency.py " + " ".join(f"--policy {p}" for p in args.policy)
        Path(args.out).write_text(
            f"# GPC chunk latency ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)\n\n"
            f"`{cmd} --weights {args.weights} --iters {args.iters} --rounds {args.rounds}`\n\n"
            f"{table}\n\n{verdict}\n"
        )


if __name__ == "__main__":
    main()
