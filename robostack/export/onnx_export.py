"""``robostack export``: one ONNX graph from the raw observation history to the executed, clipped action chunk.

normalise -> encode -> K denoising (DDIM) or integration (flow) steps unrolled in the graph -> unnormalise -> clip
to the action bounds. The initial noise is a graph input, so the exported model and the PyTorch policy can be
compared exactly; the runtime fills it from a seeded generator when the caller does not.

Next to ``model.onnx`` the exporter writes ``model.export.yaml`` (the export config, to reproduce it) and
``model.policy/`` (the same weights as a PyTorch policy folder, for the runtime's PyTorch/CUDA-graph backend on
machines without onnxruntime-gpu).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import robostack
from robostack.config import save_yaml
from robostack.data.normalize import STATS_FILE
from robostack.errors import RobostackError
from robostack.policies.base import Policy
from robostack.policies.checkpoint import POLICY_JSON, WEIGHTS, load_policy, read_policy_meta
from robostack.policies.loading import resolve_policy_folder
from robostack.runtime.model_meta import ACTION_OUTPUT, NOISE_INPUT, ModelMeta, config_hash
from robostack.utils.table import format_table

PARITY_TOL_FP32 = 1e-5
FAIL_TOL_FP32 = 1e-4  # beyond this the graph is wrong, not merely rounded differently


@dataclass
class ExportConfig:
    policy: str = ""
    """Training run folder or policy folder to export."""
    out: str = "model.onnx"
    steps: int = 0
    """Denoising (DDIM) or integration steps unrolled in the graph; 0 = the policy's configured number."""
    fp16: bool = False
    """Also write ``<out>.fp16.onnx`` (fp16 weights and arithmetic, fp32 inputs/outputs) and report its error."""
    opset: int = 17
    noise_seed: int = 0
    """Seed of the runtime's default noise generator (stored in the model)."""
    parity_batch: int = 4
    """Random observation histories the parity check compares on."""


@dataclass
class ExportReport:
    path: str
    family: str
    steps: int
    parity_max_abs: float
    export_seconds: float
    size_mb: float
    fp16_path: str = ""
    fp16_max_abs: float | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("model", self.path),
            ("family / steps", f"{self.family} / {self.steps}"),
            ("size", f"{self.size_mb:.1f} MB"),
            ("max |ONNX - PyTorch| (fp32)", f"{self.parity_max_abs:.2e}"),
            ("export time", f"{self.export_seconds:.1f} s"),
        ]
        if self.fp16_path:
            err = "n/a" if self.fp16_max_abs is None else f"{self.fp16_max_abs:.2e}"
            rows.append(("fp16 model / max |fp16 - fp32|", f"{self.fp16_path} / {err}"))
        rows += [("note", n) for n in self.notes]
        return format_table(["export", ""], rows)


def random_inputs(policy: Policy, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh observation histories spread over the training range (slightly beyond it) plus noise."""
    out: dict[str, np.ndarray] = {}
    t_o = policy.config.n_obs_steps
    for k, spec in policy.spec.obs.items():
        shape = (batch, t_o, *spec.shape)
        if spec.dtype == "uint8":
            out[k] = rng.integers(0, 256, size=shape, dtype=np.uint8)
            continue
        norm = policy.normalizer
        lo = norm.stat(k, "min").cpu().numpy()
        hi = norm.stat(k, "max").cpu().numpy()
        u = rng.uniform(-0.1, 1.1, size=shape)
        out[k] = (lo + u * (hi - lo)).astype(np.float32)
    if policy.takes_noise:
        out[NOISE_INPUT] = rng.standard_normal((batch, *policy.noise_shape)).astype(np.float32)
    return out


def torch_reference(policy: Policy, feed: dict[str, np.ndarray], steps: int | None) -> np.ndarray:
    with torch.no_grad():
        obs = {k: torch.as_tensor(v) for k, v in feed.items() if k != NOISE_INPUT}
        noise = torch.as_tensor(feed[NOISE_INPUT]) if NOISE_INPUT in feed else None
        return policy.predict_chunk(obs, noise=noise, num_steps=steps).numpy()


def _atomic_save(model: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def _to_fp16(model: Any) -> Any:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)


def _ort_run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run([ACTION_OUTPUT], feed)[0]


def export_policy(cfg: ExportConfig) -> ExportReport:
    """Trace, check and write ``cfg.out`` (+ fp16 variant, sidecar policy folder and export config)."""
    folder = resolve_policy_folder(cfg.policy)
    meta_json = read_policy_meta(folder)
    policy = load_policy(folder).eval()
    steps = (
        _no_steps(policy, cfg)
        if not policy.num_steps
        else policy.check_num_steps(cfg.steps or policy.num_steps)
    )
    out = Path(cfg.out)
    if out.suffix != ".onnx":
        raise RobostackError(f"--out must end in .onnx, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)

    names = [*policy.spec.obs, *([NOISE_INPUT] if policy.takes_noise else [])]
    t0 = time.perf_counter()
    model = trace_graph(policy, names, steps, cfg)
    meta = model_meta(policy, meta_json, steps, names, cfg.noise_seed)
    model.doc_string = f"robostack {policy.family} policy exported from {folder}"
    _set_props(model, meta.to_props())
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise RobostackError(f"exported graph fails onnx.checker: {exc}") from None
    _atomic_save(model, out)
    report = ExportReport(
        path=str(out),
        family=policy.family,
        steps=steps,
        parity_max_abs=0.0,
        export_seconds=time.perf_counter() - t0,
        size_mb=out.stat().st_size / 1e6,
    )
    feed, got = check_parity(policy, out, steps, cfg, report)
    if cfg.fp16:
        _export_fp16(model, meta, out, feed, got, report)
    write_sidecar(folder, out)
    save_yaml(asdict(cfg), out.with_suffix(".export.yaml"))
    return report


def _no_steps(policy: Policy, cfg: ExportConfig) -> int:
    if cfg.steps:
        raise RobostackError(f"--steps: {policy.family} policies have no denoising or integration steps")
    return 0


def trace_graph(policy: Policy, names: list[str], steps: int, cfg: ExportConfig) -> Any:
    """The policy's export graph traced to an ONNX model (batch dimension dynamic)."""
    graph = policy.export_graph(list(policy.spec.obs), steps or None).eval()
    example = random_inputs(policy, 1, np.random.default_rng(cfg.noise_seed + 1))
    tmp = Path(cfg.out).with_name(Path(cfg.out).name + ".trace")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(torch.as_tensor(example[k]) for k in names),
            str(tmp),
            input_names=names,
            output_names=[ACTION_OUTPUT, *policy.extra_outputs],
            dynamic_axes={n: {0: "batch"} for n in [*names, ACTION_OUTPUT, *policy.extra_outputs]},
            opset_version=cfg.opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(tmp))
    tmp.unlink()
    return model


def model_meta(
    policy: Policy, meta_json: dict[str, Any], steps: int, names: list[str], noise_seed: int
) -> ModelMeta:
    """What the runtime needs to know about the graph, from the policy and its folder's ``policy.json``."""
    return ModelMeta(
        family=policy.family,
        spec=policy.spec,
        n_obs_steps=policy.config.n_obs_steps,
        horizon=policy.config.horizon,
        n_action_steps=policy.config.n_action_steps,
        steps=steps,
        noise="gaussian" if policy.takes_noise else "none",
        noise_shape=list(policy.noise_shape) if policy.takes_noise else [],
        noise_seed=noise_seed,
        stats_hash=meta_json.get("stats_hash", ""),
        config_hash=config_hash(meta_json.get("train_config") or meta_json["config"]),
        robostack_version=robostack.__version__,
        inputs=names,
        policy_config=meta_json["config"],
        data=meta_json.get("data", {}),
    )


def check_parity(
    policy: Policy, out: Path, steps: int, cfg: ExportConfig, report: ExportReport
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The written model against PyTorch on fresh inputs; a graph that disagrees is deleted and refused."""
    feed = random_inputs(policy, cfg.parity_batch, np.random.default_rng(cfg.noise_seed + 2))
    ref = torch_reference(policy, feed, steps or None)
    got = _ort_run(out, feed)
    err = float(np.abs(got - ref).max())
    if not err <= FAIL_TOL_FP32:
        out.unlink()
        raise RobostackError(f"exported graph disagrees with PyTorch (max abs error {err:.2e}); not written")
    report.parity_max_abs = err
    if err > PARITY_TOL_FP32:
        report.notes.append(f"parity {err:.1e} is above the {PARITY_TOL_FP32:.0e} target")
    return feed, got


def write_sidecar(folder: Path, out: Path) -> None:
    """``<out>.policy/``: the inference weights (not the optimiser state) as a policy folder, for the runtime's
    PyTorch backend."""
    sidecar = out.with_suffix(".policy")
    if sidecar.exists():
        shutil.rmtree(sidecar)
    sidecar.mkdir()
    for name in (POLICY_JSON, WEIGHTS, STATS_FILE):
        shutil.copy2(folder / name, sidecar / name)


def _set_props(model: Any, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def _export_fp16(
    model: Any,
    meta: ModelMeta,
    out: Path,
    feed: dict[str, np.ndarray],
    fp32: np.ndarray,
    report: ExportReport,
) -> None:
    half = _to_fp16(model)
    meta16 = ModelMeta(**{**meta.__dict__, "precision": "fp16"})
    _set_props(half, meta16.to_props())
    path = out.with_suffix(".fp16.onnx")
    _atomic_save(half, path)
    report.fp16_path = str(path)
    try:
        report.fp16_max_abs = float(np.abs(_ort_run(path, feed) - fp32).max())
    except Exception as exc:  # CPU builds of onnxruntime lack fp16 kernels for some ops
        report.notes.append(f"fp16 error not measurable with this onnxruntime ({type(exc).__name__})")
