"""Training and export are bitwise reproducible, and bitwise the same as when the reference hashes were recorded.

Every family (and a camera variant of the two encoders) trains a few steps through the real trainer on a small
store, then exports; the hashes of ``model.safetensors`` and of the ONNX graph (the graph only: the model's doc
string and metadata name the folder it came from) must equal ``tests/data/bitwise_reference.json``. Refactoring
the trainer, the families or the exporter must not move a bit, so results measured before stay valid.

Float results depend on the CPU's vector instructions and on torch's version, so the stored hashes are keyed by
both; on a platform without stored hashes the test still checks that two trainings give the same bytes. After an
intended change of the numbers: ``ROBOSTACK_UPDATE_REFERENCE=1 pytest tests/test_bitwise_reference.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from robostack.algos.bc import train
from robostack.config import from_dict
from robostack.data import EpisodeWriter, FeatureSpec, StoreInfo
from robostack.export import ExportConfig, export_policy
from robostack.train.config import TrainConfig

from conftest import random_episode

REFERENCE = Path(__file__).parent / "data" / "bitwise_reference.json"
TINY_UNET = {"down_dims": [16, 32, 64], "step_embed_dim": 32}
FEATURES = {
    "obs/state": FeatureSpec("float32", (4,)),
    "obs/object": FeatureSpec("float32", (3,)),
    "obs/image_front": FeatureSpec("uint8", (24, 24, 3)),
    "action": FeatureSpec("float32", (2,)),
}
LOWDIM = ["obs/state", "obs/object"]
CASES = {
    "diffusion": {"type": "diffusion", "num_inference_steps": 3, "unet": TINY_UNET, "obs_keys": LOWDIM},
    "flow": {"type": "flow", "num_integration_steps": 2, "integrator": "midpoint", "unet": TINY_UNET,
             "obs_keys": LOWDIM},
    "gaussian": {"type": "gaussian", "hidden_dims": [32, 32], "n_obs_steps": 2, "obs_keys": LOWDIM},
    "diffusion-camera": {"type": "diffusion", "num_inference_steps": 2,
                         "unet": {**TINY_UNET, "image_feature_dim": 16}, "obs_keys": [*LOWDIM, "obs/image_front"]},
    "gaussian-camera": {"type": "gaussian", "hidden_dims": [32], "image_feature_dim": 16,
                        "obs_keys": [*LOWDIM, "obs/image_front"]},
}  # fmt: skip


def platform_key() -> str:
    return f"torch {torch.__version__} / {torch.backends.cpu.get_cpu_capability()}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bitwise") / "store.zarr"
    rng = np.random.default_rng(7)
    info = StoreInfo(
        control_rate_hz=10.0,
        features=FEATURES,
        robot="test",
        extra={"task_spec": {"action_low": [-3.0, -3.0], "action_high": [3.0, 3.0]}},
    )
    with EpisodeWriter.create(path, info) as w:
        for n in (30, 24, 40, 33, 28, 36):
            w.add_episode(random_episode(FEATURES, n, rng), success=True, task="test")
    return path


def train_and_export(store: Path, case: str, out: Path) -> dict[str, str]:
    cfg = from_dict(
        TrainConfig,
        {
            "policy": CASES[case],
            "data": {"path": str(store), "val_fraction": 0.2},
            "optim": {"batch_size": 8, "warmup_steps": 2},
            "steps": 5,
            "log_every": 2,
            "val_every": 4,
            "save_every": 5,
            "seed": 3,
            "num_threads": 1,
        },
    )
    run = train(cfg, out / "run", progress=False)
    ckpt = run / "checkpoints" / "step_00000005"
    export_policy(ExportConfig(policy=str(run), out=str(out / "model.onnx")))
    graph = onnx.load(str(out / "model.onnx")).graph.SerializeToString()
    return {
        "weights": hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()[:20],
        "train_state": _state_hash(ckpt / "train_state.pt"),
        "onnx_graph": hashlib.sha256(graph).hexdigest()[:20],
    }


def _state_hash(path: Path) -> str:
    """The optimiser's moments and step counters and the EMA, tensor by tensor (torch.save's zip is not stable)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    h = hashlib.sha256()

    def feed(x: object) -> None:
        if isinstance(x, torch.Tensor):
            h.update(x.detach().contiguous().cpu().numpy().tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, list | tuple):
            for v in x:
                feed(v)
        else:
            h.update(repr(x).encode())

    feed({k: state[k] for k in ("step", "model", "ema", "optimizer", "scheduler")})
    return h.hexdigest()[:20]


@pytest.mark.parametrize("case", list(CASES))
def test_training_and_export_are_bitwise_reproducible(store, tmp_path, case):
    torch_threads = torch.get_num_threads()
    reference = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    stored = reference.get(platform_key(), {}).get(case)
    try:
        first = train_and_export(store, case, tmp_path / "a")
        if stored is None or os.environ.get("ROBOSTACK_UPDATE_REFERENCE"):
            # no reference for this platform: at least the same seed must give the same bytes twice
            assert (
                train_and_export(store, case, tmp_path / "b") == first
            ), "the same seed gave different bytes"
    finally:
        torch.set_num_threads(torch_threads)
    if os.environ.get("ROBOSTACK_UPDATE_REFERENCE"):
        reference.setdefault(platform_key(), {})[case] = first
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
        return
    if stored is None:
        pytest.skip(f"no reference hashes recorded for {platform_key()} (reproducibility checked above)")
    assert first == stored, f"{case}: training or export changed bitwise against {REFERENCE.name}"
