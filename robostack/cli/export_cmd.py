"""``robostack export`` and ``robostack infer-bench``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained policy to a self-describing ONNX model")
    p.add_argument("--policy", required=True, help="training run folder or policy checkpoint folder")
    p.add_argument("--out", required=True, help="model path, e.g. runs/NAME/model.onnx")
    p.add_argument(
        "--steps", type=int, default=0, help="denoising/integration steps in the graph (default: policy's)"
    )
    p.add_argument("--fp16", action="store_true", help="also write <out>.fp16.onnx and report its error")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the runtime's default noise")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "infer-bench", help="latency per action chunk of an exported model on every backend available here"
    )
    p.add_argument("--model", required=True, help="exported model.onnx (with model.policy/ beside it)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per backend (default 1)")
    p.add_argument("--iters", type=int, default=50, help="timed chunks per backend")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-lerobot", action="store_true", help="skip LeRobot's DiffusionPolicy baseline")
    p.add_argument("--compile", action="store_true", help="also time torch.compile on GPU")
    p.add_argument("--out", help="folder for results.md / results.json")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_infer_bench)


def cmd_export(args: argparse.Namespace) -> int:
    from robostack.export import ExportConfig, export_policy

    cfg = ExportConfig(
        policy=args.policy,
        out=args.out,
        steps=args.steps,
        fp16=args.fp16,
        opset=args.opset,
        noise_seed=args.noise_seed,
    )
    report = export_policy(cfg)
    print(report.table())
    return 0


def cmd_infer_bench(args: argparse.Namespace) -> int:
    from robostack.bench.inference import BenchConfig, run_infer_bench

    cfg = BenchConfig(
        model=args.model,
        threads=args.threads,
        iters=args.iters,
        warmup=args.warmup,
        lerobot=not args.no_lerobot,
        compile=args.compile,
    )
    report = run_infer_bench(cfg)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(report.table())
    if args.out:
        report.write(Path(args.out))
    return 0
