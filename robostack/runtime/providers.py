"""onnxruntime execution providers: preference TensorRT -> CUDA -> CPU, and a loud failure when a GPU provider
that was asked for is not the one actually running (onnxruntime otherwise falls back to CPU silently)."""

from __future__ import annotations

from typing import Any

from robostack.errors import RobostackError

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class ProviderError(RobostackError):
    """A requested execution provider or device is not available."""


def available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def has_cuda_provider() -> bool:
    return "CUDAExecutionProvider" in available()


def providers_for(device: str) -> list[Any]:
    """Provider list for a session on ``device`` ('cpu' or 'cuda'), best first."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    have = available()
    chosen = [p for p in GPU_PROVIDERS if p in have]
    if not chosen:
        raise ProviderError(
            f"device 'cuda' requested but this onnxruntime has no GPU provider (available: {', '.join(have)}); "
            "install onnxruntime-gpu in place of onnxruntime, or use backend 'torch'"
        )
    return [*chosen, "CPUExecutionProvider"]  # CPU stays last for the few host-side ops (shapes)


def check_active(session: Any, device: str) -> str:
    """The provider the session really runs on; raises if a GPU was requested and none is active."""
    active = list(session.get_providers())
    if device == "cuda":
        gpu = [p for p in active if p in GPU_PROVIDERS]
        if not gpu:
            raise ProviderError(
                f"GPU provider requested but the session runs on {', '.join(active)} "
                "(CUDA/TensorRT failed to initialise: check the CUDA and cuDNN libraries onnxruntime-gpu needs)"
            )
        return gpu[0]
    return active[0]
