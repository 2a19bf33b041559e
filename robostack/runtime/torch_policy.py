"""The PyTorch backend of the runtime: the same policy weights run eagerly, as one captured CUDA graph for the whole
sampling loop, or through ``torch.compile``. This is the GPU path on machines without onnxruntime-gpu.

A CUDA graph replays the recorded kernels of ``predict_chunk`` (encoder, every denoising step, unnormalise, clip)
with one launch, removing the per-kernel CPU overhead that dominates a small U-Net at batch 1. Inputs are copied
into static buffers first; one graph is recorded per batch size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robostack.errors import RobostackError, SpecError
from robostack.policies.base import Policy
from robostack.runtime.contract import RuntimePolicy
from robostack.runtime.providers import ProviderError

MODES = ("eager", "cudagraph", "compile", "compile-cudagraph")


class TorchRuntimePolicy(RuntimePolicy):
    def __init__(
        self,
        policy: Policy,
        device: str = "cpu",
        mode: str = "eager",
        steps: int | None = None,
        noise_seed: int = 0,
        threads: int = 0,
        warmup: int = 2,
        tf32: bool = False,
    ) -> None:
        if mode not in MODES:
            raise RobostackError(f"unknown torch runtime mode '{mode}' (choose from {', '.join(MODES)})")
        if device == "cuda" and not torch.cuda.is_available():
            raise ProviderError("device 'cuda' requested but PyTorch sees no CUDA device")
        if mode.endswith("cudagraph") and device != "cuda":
            raise RobostackError("the CUDA-graph backend needs device 'cuda'")
        if threads:
            torch.set_num_threads(threads)
        if device == "cuda":
            # cuDNN convolutions default to TF32 (~1e-3 error); exact fp32 unless the caller opts in
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
        self.policy = policy.to(device).eval()
        self._init_contract(policy.spec, policy.config.n_obs_steps, policy.config.n_action_steps)
        self.device = device
        self.mode = mode
        self.backend = f"torch-{mode}"
        self.steps = steps
        self.noise_shape = policy.noise_shape
        self.takes_noise = policy.takes_noise
        self._gen = torch.Generator(device="cpu").manual_seed(noise_seed)
        self._graphs: dict[int, tuple[Any, ...]] = {}
        # compile-cudagraph: inductor's fused kernels, replayed from one CUDA graph we record ourselves
        self._fn = (
            torch.compile(self._forward, dynamic=False) if mode.startswith("compile") else self._forward
        )
        for _ in range(warmup):
            self.predict_chunk(self.example_obs())

    def seed(self, seed: int) -> None:
        self._gen = torch.Generator(device="cpu").manual_seed(seed)

    @torch.no_grad()
    def predict_chunk(self, obs: dict[str, Any], noise: np.ndarray | None = None) -> np.ndarray:
        obs = {k: np.asarray(v) for k, v in obs.items()}
        self.spec.check_obs(obs, batched=True)
        b = next(iter(obs.values())).shape[0]
        if noise is not None and not self.takes_noise:
            raise SpecError(f"this model takes no noise: a {self.policy.family} policy's chunk is its mean")
        if noise is None:
            shape = (b, *self.noise_shape)
            # a one-shot policy's chunk is its mean: zero noise (a static input for the CUDA graph)
            noise_t = torch.randn(shape, generator=self._gen) if self.takes_noise else torch.zeros(shape)
        else:
            noise_t = torch.as_tensor(np.asarray(noise, dtype=np.float32))
            if tuple(noise_t.shape) != (b, *self.noise_shape):
                raise SpecError(f"noise has shape {tuple(noise_t.shape)}, expected {(b, *self.noise_shape)}")
        t_o = self.n_obs_steps
        tensors = {k: torch.as_tensor(obs[k][:, -t_o:]) for k in self.spec.obs}
        if self.mode.endswith("cudagraph"):
            return self._replay(tensors, noise_t).cpu().numpy()
        dev = {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()}
        return self._fn(dev, noise_t.to(self.device)).cpu().numpy()

    # ------------------------------------------------------------------ internals
    def _forward(self, obs: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        return self.policy.predict_chunk(obs, noise=noise, num_steps=self.steps)

    def _replay(self, obs: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        b = noise.shape[0]
        if b not in self._graphs:
            self._graphs[b] = self._capture(obs, noise)
        graph, static_obs, static_noise, static_out = self._graphs[b]
        for k, v in obs.items():
            static_obs[k].copy_(v, non_blocking=True)
        static_noise.copy_(noise, non_blocking=True)
        graph.replay()
        return static_out

    def _capture(self, obs: dict[str, torch.Tensor], noise: torch.Tensor) -> Any:
        static_obs = {k: v.to(self.device).clone() for k, v in obs.items()}
        static_noise = noise.to(self.device).clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # allocator warm-up off the default stream, as capture requires
            for _ in range(3):
                self._fn(static_obs, static_noise)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._fn(static_obs, static_noise)
        return graph, static_obs, static_noise, static_out
