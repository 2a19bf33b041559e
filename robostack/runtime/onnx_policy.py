"""An exported model behind the policies' inference contract, run by onnxruntime.

``predict_chunk`` takes raw observation histories (B, T_o, ...) as numpy arrays and returns the executed, clipped
action chunk (B, T_a, Da); ``select_action`` is the stateful per-step call a control loop makes. Inputs are
checked against the spec stored in the model before anything runs.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robostack.errors import RobostackError, SpecError
from robostack.runtime.contract import RuntimePolicy
from robostack.runtime.model_meta import ACTION_OUTPUT, NOISE_INPUT, ModelMeta
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
        # GPU: inputs copied to the device once per call, the output read back once; CPU binds per-batch buffers
        self._binding = self.session.io_binding() if device == "cuda" else None
        # per key: (name, per-step shape, is image) -- precomputed, predict_chunk runs every control period
        self._keys = [(k, tuple(v.shape), v.dtype == "uint8") for k, v in self.spec.obs.items()]
        self._slots: dict[int, _Slot] = {}
        self._lock = threading.Lock()
        for _ in range(warmup):
            self.predict_chunk(self.example_obs())

    # ------------------------------------------------------------------ contract
    def seed(self, seed: int) -> None:
        """Re-seed the default noise (evaluation seeds it per episode, like the PyTorch path)."""
        self._rng = np.random.default_rng(seed)

    def predict_chunk(self, obs: dict[str, Any], noise: np.ndarray | None = None) -> np.ndarray:
        """Raw observation histories (B, >= T_o, ...) -> executed actions (B, T_a, Da), float32."""
        with self._lock:  # the bound buffers below are shared between calls
            if self._binding is not None:
                return self._run_gpu(self._prepare(obs), noise)
            slot = self._slot(self._batch_of(obs))
            if not self._fill_exact(obs, slot):
                self._fill(obs, slot.inputs, slot.block)
            self._fill_noise(slot.inputs, noise)
            self.session.run_with_iobinding(slot.binding)
            return slot.out.copy()

    # ------------------------------------------------------------------ internals
    def _batch_of(self, obs: dict[str, Any]) -> int:
        k = self._keys[0][0]
        a = obs.get(k)
        if a is None:
            self.spec.check_obs(obs, batched=True)
        shape = getattr(a, "shape", None) or np.shape(a)
        if len(shape) < 2:
            self.spec.check_obs(obs, batched=True)
            raise SpecError(f"observation '{k}' must be (batch, frames, *{self._keys[0][1]})")
        return int(shape[0])

    def _slot(self, b: int) -> _Slot:
        """Input/output buffers for batch size ``b``, bound to the session once: a call then only copies the
        observations in, with none of ``session.run``'s per-call feed handling."""
        slot = self._slots.get(b)
        if slot is not None:
            return slot
        inputs, block = self._buffers(b)
        if self.meta.noise != "none":
            inputs[NOISE_INPUT] = np.zeros((b, *self.meta.noise_shape), np.float32)
        out = np.empty_like(self.session.run([ACTION_OUTPUT], inputs)[0])
        binding = self.session.io_binding()
        for k, v in inputs.items():
            binding.bind_cpu_input(k, v)  # onnxruntime reads these arrays in place on every run
        binding.bind_output(ACTION_OUTPUT, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        if len(self._slots) >= 8:  # a caller cycling through batch sizes keeps the newest few
            self._slots.pop(next(iter(self._slots)))
        slot = self._slots[b] = _Slot(inputs, block, out, binding, np.zeros_like(block))
        return slot

    def _fill_exact(self, obs: dict[str, Any], slot: _Slot) -> bool:
        """The control loop's case -- every key an array of exactly the model's (B, T_o, ...) shape and dtype --
        copied with no per-key checks beyond that; False (nothing trusted) sends the call through ``_fill``."""
        for k, _, _ in self._keys:
            a, buf = obs.get(k), slot.inputs[k]
            if a.__class__ is not np.ndarray or a.shape != buf.shape or a.dtype != buf.dtype:
                return False
            np.copyto(buf, a)
        # finite * 0 is 0 and NaN or +-Inf * 0 is NaN: one dot product instead of a boolean array per call (when
        # it is not finite, _fill finds the key and says which)
        return math.isfinite(slot.block.dot(slot.zeros))

    def _buffers(self, b: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One array per observation key, and the block the float ones are views of (one finiteness check covers
        them all)."""
        t_o = self.meta.n_obs_steps
        sizes = [b * t_o * int(np.prod(shape)) for _, shape, image in self._keys if not image]
        block = np.zeros(sum(sizes), np.float32)
        out: dict[str, np.ndarray] = {}
        at = 0
        for k, shape, image in self._keys:
            if image:
                out[k] = np.zeros((b, t_o, *shape), np.uint8)
            else:
                n = b * t_o * int(np.prod(shape))
                out[k] = block[at : at + n].reshape(b, t_o, *shape)
                at += n
        return out, block

    def _fill(self, obs: dict[str, Any], dst: dict[str, np.ndarray], block: np.ndarray) -> None:
        """Check each key and copy its last T_o frames into its buffer (casting to the model's dtype); anything
        unusual goes through the spec check for its exact error."""
        t_o = self.meta.n_obs_steps
        for k, shape, image in self._keys:
            a = obs.get(k)
            if a is None:
                self.spec.check_obs(obs, batched=True)
            if type(a) is not np.ndarray:
                a = np.asarray(a)
            buf = dst[k]
            if (
                a.ndim < 2
                or a.shape[2:] != shape
                or (a.dtype != np.uint8 if image else a.dtype.kind not in "fiu")
            ):
                self.spec.check_obs(obs, batched=True)
                raise SpecError(f"observation '{k}' must be (batch, frames, *{shape})")
            if a.shape[0] != buf.shape[0]:
                raise SpecError(
                    f"observations disagree on the batch size ('{k}' has {a.shape[0]}, not {buf.shape[0]})"
                )
            if a.shape[1] != t_o:
                if a.shape[1] < t_o:
                    raise SpecError(f"observation '{k}' has {a.shape[1]} frames, the model needs {t_o}")
                a = a[:, -t_o:]
            np.copyto(buf, a, casting="unsafe")
        if not np.isfinite(block).all():
            bad = next(k for k, _, image in self._keys if not image and not np.isfinite(dst[k]).all())
            raise SpecError(f"observation '{bad}' holds NaN or Inf")

    def _fill_noise(self, dst: dict[str, np.ndarray], noise: np.ndarray | None) -> None:
        if self.meta.noise == "none":
            if noise is not None:
                raise SpecError(f"this model takes no noise: a {self.meta.family} policy's chunk is its mean")
            return
        buf = dst[NOISE_INPUT]
        if noise is None:
            self._rng.standard_normal(dtype=np.float32, out=buf)
            return
        noise = np.asarray(noise)
        if noise.shape != buf.shape:
            raise SpecError(f"noise has shape {noise.shape}, the model expects {buf.shape}")
        np.copyto(buf, noise, casting="unsafe")

    def _prepare(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Checked, contiguous float32 / uint8 copies of the last T_o frames (the GPU path binds these)."""
        feed, block = self._buffers(self._batch_of(obs))
        self._fill(obs, feed, block)
        return feed

    def _run_gpu(self, feed: dict[str, np.ndarray], noise: np.ndarray | None) -> np.ndarray:
        if self.meta.noise != "none":
            feed[NOISE_INPUT] = np.empty(
                (next(iter(feed.values())).shape[0], *self.meta.noise_shape), np.float32
            )
        self._fill_noise(feed, noise)
        binding = self._binding  # GPU: inputs copied once, the output read back once
        for k, v in feed.items():
            binding.bind_cpu_input(k, v)
        binding.bind_output(ACTION_OUTPUT, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


@dataclass
class _Slot:
    inputs: dict[str, np.ndarray]
    block: np.ndarray
    out: np.ndarray
    binding: Any
    zeros: np.ndarray
    """Zeros shaped like ``block``: its dot product with them is NaN exactly when a value is not finite."""
