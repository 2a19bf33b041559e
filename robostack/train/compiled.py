"""How ``robostack train --compile=true`` compiles the training loss.

Inductor's Python wrapper checks, by default, the size and strides of every tensor an external kernel (oneDNN
convolution, GEMM) returns and of every graph input, on every call: hundreds of checks per compiled U-Net training
step, about 2% of it. They guard against a wrong stride prediction in a kernel's meta function, which would make the
graph read its buffers in the wrong order; ``tests/test_train_compile.py`` checks the compiled values and gradients
of the U-Net's building blocks against eager ones with the same options, so the check runs there once instead of in
every training step. The generated kernels are the same, so training is bitwise unchanged.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

#: Inductor options for compiled training (see the module docstring).
TRAIN_COMPILE_OPTIONS: dict[str, Any] = {"size_asserts": False}

M = TypeVar("M")


def compile_for_training(fn: M) -> M:
    """``torch.compile`` with :data:`TRAIN_COMPILE_OPTIONS`."""
    return torch.compile(fn, options=dict(TRAIN_COMPILE_OPTIONS))  # type: ignore[return-value]
