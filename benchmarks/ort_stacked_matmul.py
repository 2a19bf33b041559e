"""Would stacking two same-shaped parents into one batched network speed a GPC composite up in onnxruntime?

The composite runs its parents' U-Nets one after the other; the idea is one network whose every weight is the
parents' weights stacked, so each layer is one batched MatMul (P, T, K*C) @ (P, K*C, O) instead of P 2-D ones. This
measures exactly that layer pattern (the push U-Net's widest conv as a GEMM: K*C = 1280, O = 256, T = 16, ten
layers deep), ONNX, CPU, one thread, batch 1, both graphs in one process, alternating.

    .venv/bin/python benchmarks/ort_stacked_matmul.py [--rounds 5] [--iters 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

KC, OUT, T, DEPTH = 1280, 256, 16, 10


class Separate(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(KC, OUT) / KC**0.5) for _ in range(2)]
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(DEPTH):
            a = torch.tanh(a @ self.w[0]).repeat(1, 1, KC // OUT)
            b = torch.tanh(b @ self.w[1]).repeat(1, 1, KC // OUT)
        return a, b


class Stacked(torch.nn.Module):
    def __init__(self, sep: Separate) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.stack(list(sep.w)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([a, b])
        for _ in range(DEPTH):
            x = torch.tanh(x @ self.w).repeat(1, 1, KC // OUT)
        return x[0:1], x[1:2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)
    sep = Separate()
    models = {"two 2-D MatMuls per layer": sep, "one stacked 3-D MatMul per layer": Stacked(sep)}
    a, b = torch.randn(1, T, KC), torch.randn(1, T, KC)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in models.items():
            path = Path(tmp) / f"{len(sessions)}.onnx"
            torch.onnx.export(m, (a, b), str(path), input_names=["a", "b"], dynamo=False)
            sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {"a": a.numpy(), "b": b.numpy()}
    outs = [s.run(None, feed) for s in sessions.values()]
    diff = max(float(np.abs(x - y).max()) for x, y in zip(*outs, strict=True))
    ms: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(args.rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(args.iters):
                s.run(None, feed)
            ms[name].append((time.perf_counter() - t0) / args.iters * 1e3)
    base = float(np.median(ms["two 2-D MatMuls per layer"]))
    print(
        f"| layers (onnxruntime {ort.__version__}, CPU, 1 thread) | ms per call (median of {args.rounds}) | ratio |"
    )
    print("|---|---|---|")
    for name, v in ms.items():
        print(f"| {name} | {np.median(v):.3f} | {np.median(v) / base:.2f}x |")
    print(f"\nmax |difference| between the two graphs' outputs: {diff:.1e}")


if __name__ == "__main__":
    main()
