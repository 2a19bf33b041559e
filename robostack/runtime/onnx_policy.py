"""An exported model behind the policies' inference contract, run by onnxruntime.

``predict_chunk`` takes raw observation histories (B, T_o, ...) as numpy arrays and returns the executed, clipped
action chunk (B, T_a, Da); ``select_action`` is the stateful per-step call a control loop makes. Inputs are
checked against the spec stored in the model before anything runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from robostack.errors import RobostackError, SpecError
from robostack.export.metadata import ACTION_OUTPUT, NOISE_INPUT, ModelMeta
from robostack.runtime.contract import RuntimePolicy
from robostack.runtime.providers import check_active, providers_for


class OnnxPolicy(RuntimePolicy):
    def __init__(
        self, path: str | os.PathLike[str], device: str = "cpu", threads: int = 0, warmup: int = 2
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise RobostackError(f"{self.path}: no such model file")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers_for(device))
        except RobostackError:
            raise
        except Exception as exc:
            raise RobostackError(f"{self.path}: onnxruntime cannot load it ({type(exc).__name__})") from None
        self.provider = check_active(self.session, device)
        self.device = device
        self.backend = "onnxruntime"
        self.meta = ModelMeta.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self._init_contract(self.meta.spec, self.meta.n_obs_steps, self.meta.n_action_steps)
        names = [i.name for i in self.session.get_inputs()]
        if names != self.meta.inputs or ACTION_OUTPUT not in [o.name for o in self.session.get_outputs()]:
            raise RobostackError(
                f"{self.path}: graph inputs {names} do not match its metadata {self.meta.inputs}"
            )
        self._rng = np.random.default_rng(self.meta.noise_seed)
        self._binding = self.session.io_binding() if device == "cuda" else None  # (measured no gain on CPU)
        # per key: (name, per-step shape, is image) -- precomputed, predict_chunk runs every control period
        self._keys = [(k, tuple(v.shape), v.dtype == "uint8") for k, v in self.spec.obs.items()]
        self._zeros: dict[int, np.ndarray] = {}
        for _ in range(warmup):
            self.predict_chunk(self.example_obs())

    # ------------------------------------------------------------------ contract
    def seed(self, seed: int) -> None:
        """Re-seed the default noise (evaluation seeds it per episode, like the PyTorch path)."""
        self._rng = np.random.default_rng(seed)

    def predict_chunk(self, obs: dict[str, Any], noise: np.ndarray | None = None) -> np.ndarray:
        """Raw observation histories (B, >= T_o, ...) -> executed actions (B, T_a, Da), float32."""
        return self._run(self._prepare(obs), noise)

    # ------------------------------------------------------------------ internals
    def _prepare(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Fast path for well-formed input; anything unusual goes through the spec check for its exact error."""
        feed: dict[str, np.ndarray] = {}
        t_o = self.meta.n_obs_steps
        batch = -1
        for k, shape, image in self._keys:
            a = obs.get(k)
            if a is None:
                self.spec.check_obs(obs, batched=True)
            if type(a) is not np.ndarray:
                a = np.asarray(a)
            if (
                a.ndim < 2
                or a.shape[2:] != shape
                or (a.dtype != np.uint8 if image else a.dtype.kind not in "fiu")
            ):
                self.spec.check_obs(obs, batched=True)
                raise SpecError(f"observation '{k}' must be (batch, frames, *{shape})")
            if not image:
                if a.dtype != np.float32:
                    a = a.astype(np.float32)
                if not np.isfinite(a).all():
                    raise SpecError(f"observation '{k}' holds NaN or Inf")
            if a.shape[1] != t_o:
                if a.shape[1] < t_o:
                    raise SpecError(f"observation '{k}' has {a.shape[1]} frames, the model needs {t_o}")
                a = a[:, -t_o:]
            if batch < 0:
                batch = a.shape[0]
            elif a.shape[0] != batch:
                raise SpecError(
                    f"observations disagree on the batch size ('{k}' has {a.shape[0]}, not {batch})"
                )
            feed[k] = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        return feed

    def _noise(self, b: int) -> np.ndarray:
        shape = (b, *self.meta.noise_shape)
        if self.meta.noise == "zeros":
            if b not in self._zeros:  # never written to: onnxruntime reads inputs only
                self._zeros[b] = np.zeros(shape, np.float32)
            return self._zeros[b]
        return self._rng.standard_normal(shape, dtype=np.float32)

    def _run(self, feed: dict[str, np.ndarray], noise: np.ndarray | None) -> np.ndarray:
        b = next(iter(feed.values())).shape[0]
        if noise is None:
            noise = self._noise(b)
        else:
            noise = np.ascontiguousarray(noise, dtype=np.float32)
            if noise.shape != (b, *self.meta.noise_shape):
                raise SpecError(
                    f"noise has shape {noise.shape}, the model expects {(b, *self.meta.noise_shape)}"
                )
        feed[NOISE_INPUT] = noise
        if self._binding is None:
            return self.session.run([ACTION_OUTPUT], feed)[0]
        binding = self._binding  # GPU: inputs copied once, the output read back once
        for k, v in feed.items():
            binding.bind_cpu_input(k, v)
        binding.bind_output(ACTION_OUTPUT, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]
