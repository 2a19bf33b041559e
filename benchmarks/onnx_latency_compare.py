"""Time exported policy graphs side by side: onnxruntime, CPU, 1 thread, batch 1, random inputs of each graph's
shapes, in alternating rounds so every graph meets the same phases of a shared machine. For comparing two exports
of the same policy (e.g. an older export form against the current one) or a composite against its parents.

    .venv/bin/python benchmarks/onnx_latency_compare.py old_p0.onnx new_p0.onnx ... [--iters 15 --rounds 6]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sessions = {}
    for path in args.models:
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {
            i.name: rng.standard_normal([1 if isinstance(d, str) else d for d in i.shape]).astype(np.float32)
            for i in sess.get_inputs()
        }
        for _ in range(3):
            sess.run(None, feed)
        sessions[path] = (sess, feed, len(onnx.load(path).graph.node))
    times: dict[str, list[float]] = {p: [] for p in sessions}
    for _ in range(args.rounds):
        for p, (sess, feed, _) in sessions.items():
            for _ in range(args.iters):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times[p].append(1e3 * (time.perf_counter() - t0))
    print("| graph | nodes | p50 ms | p90 ms |\n|---|---|---|---|")
    for p, (_, _, nodes) in sessions.items():
        v = times[p]
        print(f"| {Path(p).name} | {nodes} | {np.percentile(v, 50):.2f} | {np.percentile(v, 90):.2f} |")


if __name__ == "__main__":
    main()
