"""``robostack infer-bench``: latency per action chunk of one exported model on every backend available here.

Every backend runs the same model (same weights, same steps) through its public inference call, batch 1, in the
same process, one after another: onnxruntime (CPU, and CUDA when installed), the PyTorch eager path, the CUDA-graph
and compiled PyTorch paths on a GPU, and LeRobot's ``DiffusionPolicy.select_action`` with the same U-Net size and
steps as the baseline robot-learning engineers know. Ratios are computed from these numbers only.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robostack.errors import RobostackError
from robostack.utils.table import format_markdown, format_table


@dataclass
class BenchConfig:
    model: str = ""
    threads: int = 1
    iters: int = 50
    warmup: int = 5
    lerobot: bool = True
    compile: bool = False


@dataclass
class BackendTiming:
    backend: str
    device: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    iters: int


@dataclass
class InferBenchReport:
    model: str
    family: str
    steps: int
    params: int
    machine: dict[str, Any]
    timings: list[BackendTiming] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def ratios(self) -> list[tuple[str, str, float]]:
        """(faster, slower, p50 ratio) for each backend against every slower one on the same device."""
        out = []
        for a in self.timings:
            for b in self.timings:
                if a is not b and a.device == b.device and a.p50_ms < b.p50_ms:
                    out.append((f"{a.backend}/{a.device}", f"{b.backend}/{b.device}", b.p50_ms / a.p50_ms))
        return out

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (t.backend, t.device, f"{t.p50_ms:.3f}", f"{t.p99_ms:.3f}", f"{t.mean_ms:.3f}", str(t.iters))
            for t in self.timings
        ]

    HEADERS = ("backend", "device", "p50 ms", "p99 ms", "mean ms", "chunks")

    def table(self) -> str:
        head = (
            f"{self.model}: {self.family}, {self.steps} steps, {self.params / 1e6:.2f} M parameters, "
            f"{self.machine.get('threads')} CPU thread(s)"
        )
        lines = [head, format_table(list(self.HEADERS), self._rows())]
        lines += [f"{a} is {r:.2f}x faster than {b} (p50)" for a, b, r in self.ratios()]
        lines += [f"skipped {k}: {v}" for k, v in self.skipped.items()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratios"] = [{"faster": a, "slower": b, "p50_ratio": r} for a, b, r in self.ratios()]
        return d

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(self.to_json(), indent=1))
        md = [
            f"# robostack infer-bench ({time.strftime('%Y-%m-%d')})",
            "",
            f"Model: {self.family}, {self.steps} steps, {self.params / 1e6:.2f} M parameters. "
            f"Machine: {self.machine}",
            "",
            format_markdown(list(self.HEADERS), self._rows()),
            "",
            *[f"- {a} is {r:.2f}x faster than {b} (p50)" for a, b, r in self.ratios()],
            *[f"- skipped {k}: {v}" for k, v in self.skipped.items()],
        ]
        (out / "results.md").write_text("\n".join(md) + "\n")


def time_chunks(fn: Callable[[], Any], iters: int, warmup: int) -> tuple[float, float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    a = np.asarray(ts) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.mean())


def _machine(threads: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _lerobot_chunk(model: Path, steps: int) -> Callable[[], Any]:
    """LeRobot's DiffusionPolicy with the model's U-Net, horizon and steps; one call = one planned chunk."""
    import torch

    from robostack.compare.lerobot_diffusion import LeRobotDiffusion
    from robostack.data.normalize import load_stats
    from robostack.policies.checkpoint import read_policy_meta

    folder = model.with_suffix(".policy")
    meta = read_policy_meta(folder)
    from robostack.policies.base import PolicySpec

    spec = PolicySpec.from_json(meta["spec"])
    peer = LeRobotDiffusion(spec, load_stats(folder), {**meta["config"], "num_inference_steps": steps}).eval()
    obs = {k: np.zeros(v.shape, np.float32) for k, v in spec.obs.items()}

    def chunk() -> Any:
        peer.reset()  # empty queues: the next select_action runs the whole sampling loop
        with torch.no_grad():
            return peer.select_action(obs)

    return chunk


def run_infer_bench(cfg: BenchConfig) -> InferBenchReport:
    import onnxruntime as ort
    import torch

    from robostack.runtime.loader import load
    from robostack.runtime.model_meta import read_model_meta
    from robostack.runtime.providers import has_cuda_provider

    model = Path(cfg.model)
    meta = read_model_meta(model)
    torch.set_num_threads(cfg.threads)
    report = InferBenchReport(str(model), meta.family, meta.steps, 0, _machine(cfg.threads))

    def add(backend: str, device: str, make: Callable[[], Callable[[], Any]]) -> None:
        try:
            fn = make()
        except (RobostackError, ImportError, RuntimeError) as exc:
            report.skipped[f"{backend}/{device}"] = str(exc).splitlines()[0][:160]
            return
        p50, p99, mean = time_chunks(fn, cfg.iters, cfg.warmup)
        report.timings.append(BackendTiming(backend, device, p50, p99, mean, cfg.iters))
        print(f"  {backend:>16s} / {device:<4s} p50 {p50:9.3f} ms  p99 {p99:9.3f} ms", flush=True)

    def contract(policy: Any) -> Callable[[], Any]:
        obs = policy.example_obs()
        return lambda: policy.predict_chunk(obs)

    def onnx_cpu() -> Callable[[], Any]:
        return contract(load(model, "cpu", "onnxruntime", threads=cfg.threads))

    def torch_on(device: str, mode: str) -> Callable[[], Callable[[], Any]]:
        def make() -> Callable[[], Any]:
            pol = load(model, device, "torch", threads=cfg.threads, torch_mode=mode)
            if not report.params:
                report.params = sum(p.numel() for p in pol.policy.parameters())
            return contract(pol)

        return make

    add("onnxruntime", "cpu", onnx_cpu)
    add("torch-eager", "cpu", torch_on("cpu", "eager"))
    if cfg.lerobot and meta.family == "diffusion" and not meta.spec.image_keys:
        add("lerobot", "cpu", lambda: _lerobot_chunk(model, meta.steps))
    elif cfg.lerobot:
        report.skipped["lerobot/cpu"] = "the LeRobot baseline covers low-dim diffusion policies"
    if has_cuda_provider():
        add("onnxruntime", "cuda", lambda: contract(load(model, "cuda", "onnxruntime")))
    else:
        report.skipped["onnxruntime/cuda"] = f"no GPU provider in onnxruntime {ort.__version__}"
    if torch.cuda.is_available():
        add("torch-eager", "cuda", torch_on("cuda", "eager"))
        add("torch-cudagraph", "cuda", torch_on("cuda", "cudagraph"))
        if cfg.compile:
            add("torch-compile", "cuda", torch_on("cuda", "compile"))
            add("torch-compile-cudagraph", "cuda", torch_on("cuda", "compile-cudagraph"))
    else:
        report.skipped["torch/cuda"] = "no CUDA device"
    if not report.timings:
        raise RobostackError(f"{model}: no backend could run it ({report.skipped})")
    return report
