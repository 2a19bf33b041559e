"""``robostack.runtime.load``: one call for every consumer (evaluator, ROS 2 nodes, users' code).

``path`` is an exported ``model.onnx`` (or a training run / policy folder). Backends:

- ``onnxruntime`` -- the exported graph; providers TensorRT -> CUDA -> CPU as installed. On ``device='cuda'`` a
  GPU provider must be active after session creation, or loading fails (never a silent CPU fallback).
- ``torch`` -- the same weights as a PyTorch policy (``model.policy/`` beside the .onnx, written by the exporter):
  eager on CPU, the whole sampling loop captured in one CUDA graph on GPU. ``auto`` picks it on a GPU machine
  whose onnxruntime has no GPU provider.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from robostack.errors import RobostackError, SpecError
from robostack.policies.base import PolicySpec

BACKENDS = ("auto", "onnxruntime", "torch")
DEVICES = ("auto", "cpu", "cuda")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def resolve_device(device: str) -> str:
    from robostack.runtime.providers import has_cuda_provider

    if device not in DEVICES:
        raise RobostackError(f"unknown device '{device}' (choose from {', '.join(DEVICES)})")
    if device == "auto":
        return "cuda" if has_cuda_provider() or _cuda_available() else "cpu"
    return device


def spec_mismatches(have: PolicySpec, want: PolicySpec) -> list[str]:
    """Human-readable differences between a model's spec and what a caller supplies / expects."""
    out = []
    for k, v in have.obs.items():
        if k not in want.obs:
            out.append(f"model observes '{k}', caller provides {', '.join(want.obs) or 'nothing'}")
        elif tuple(want.obs[k].shape) != tuple(v.shape) or want.obs[k].dtype != v.dtype:
            out.append(
                f"'{k}': model expects {v.dtype}{tuple(v.shape)}, caller provides "
                f"{want.obs[k].dtype}{tuple(want.obs[k].shape)}"
            )
    if tuple(have.action.shape) != tuple(want.action.shape):
        out.append(
            f"action: model outputs {tuple(have.action.shape)}, caller expects {tuple(want.action.shape)}"
        )
    return out


def load(
    path: str | os.PathLike[str],
    device: str = "auto",
    backend: str = "auto",
    threads: int = 0,
    expect: PolicySpec | None = None,
    warmup: int = 2,
    torch_mode: str | None = None,
) -> Any:
    """A policy with the inference contract (reset / predict_chunk / select_action / spec) on the chosen backend."""
    from robostack.runtime.providers import has_cuda_provider

    if backend not in BACKENDS:
        raise RobostackError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    p = Path(path)
    dev = resolve_device(device)
    is_onnx = p.suffix == ".onnx"
    if backend == "auto":
        backend = "onnxruntime" if is_onnx and (dev == "cpu" or has_cuda_provider()) else "torch"
    if backend == "onnxruntime":
        if not is_onnx:
            raise RobostackError(f"{p}: the onnxruntime backend needs an exported .onnx model")
        from robostack.runtime.onnx_policy import OnnxPolicy

        policy: Any = OnnxPolicy(p, dev, threads, warmup)
    else:
        policy = _load_torch(p, dev, threads, warmup, torch_mode)
    if expect is not None:
        bad = spec_mismatches(policy.spec, expect)
        if bad:
            raise SpecError(f"{p}: model does not fit: {bad[0]}")
    return policy


def _load_torch(p: Path, device: str, threads: int, warmup: int, mode: str | None) -> Any:
    from robostack.policies.checkpoint import load_policy
    from robostack.policies.loading import resolve_policy_folder
    from robostack.runtime.torch_policy import TorchRuntimePolicy

    steps, seed = None, 0
    folder: Path = p
    if p.suffix == ".onnx":
        from robostack.runtime.model_meta import read_model_meta

        meta = read_model_meta(p)
        folder = p.with_suffix(".policy")
        if not folder.is_dir():
            raise RobostackError(
                f"{p}: the torch backend needs {folder.name}/ beside the model (re-export it)"
            )
        steps, seed = meta.steps or None, meta.noise_seed
    policy = load_policy(resolve_policy_folder(folder))
    mode = mode or ("cudagraph" if device == "cuda" else "eager")
    return TorchRuntimePolicy(policy, device, mode, steps, seed, threads, warmup)


def is_exported_model(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix == ".onnx"


def load_any_policy(path: str | os.PathLike[str], device: str = "cpu", threads: int = 0) -> Any:
    """What users pass as ``--policy``: a training run or policy folder -> the PyTorch policy; an exported .onnx ->
    the onnxruntime policy (the same inference contract)."""
    from robostack.policies.checkpoint import load_policy
    from robostack.policies.loading import resolve_policy_folder

    if is_exported_model(path):
        return load(path, device=device, backend="onnxruntime", threads=threads)
    return load_policy(resolve_policy_folder(path), device=device)


def read_any_spec(path: str | os.PathLike[str]) -> PolicySpec:
    """The spec of a policy folder, run or exported model, without building the policy."""
    from robostack.policies.checkpoint import read_policy_meta
    from robostack.policies.loading import resolve_policy_folder
    from robostack.runtime.model_meta import read_model_meta

    if is_exported_model(path):
        return read_model_meta(path).spec
    return PolicySpec.from_json(read_policy_meta(resolve_policy_folder(path))["spec"])
