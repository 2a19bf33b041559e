"""One inference runtime for exported policies: onnxruntime (TensorRT/CUDA/CPU) or PyTorch (eager / CUDA graph)."""

from robostack.runtime.loader import load
from robostack.runtime.providers import ProviderError

__all__ = ["ProviderError", "load"]
