"""Training and evaluation through the CLI, as users run them: every family end to end, determinism, resume,
multi-process DDP (gloo on CPU), images, and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, assert_one_line_error, run_cli, run_cli_here

TINY = ["--policy.unet.down_dims=[16,32,64]", "--policy.unet.step_embed_dim=32"]
FAST = ["--optim.batch_size=16", "--optim.warmup_steps=10", "--log_every=10"]


def family_args(family: str) -> list[str]:
    return TINY if family != "gaussian" else ["--policy.hidden_dims=[64,64]"]


@pytest.mark.parametrize("family", ["diffusion", "flow", "gaussian"])
def test_train_then_eval_every_family(tmp_path, push_store, family):
    out = tmp_path / family
    proc = run_cli(
        "train", "--policy", family, "--data", push_store, "--out", out, "--steps", "100", "--eval.episodes=2",
        "--save_every=50", *family_args(family), *FAST,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "success" in proc.stdout
    for f in ("config.yaml", "data.json", "metrics.jsonl", "training_curve.png", "checkpoints/last"):
        assert (out / f).exists(), f
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000050", "step_00000100"]
    assert list((out / "tb").iterdir())  # TensorBoard event file
    ckpt = out / "checkpoints" / "step_00000100"
    meta = json.loads((ckpt / "policy.json").read_text())
    assert (
        meta["type"] == family and meta["data"]["episodes"] == 20 and meta["spec"]["control_rate_hz"] == 20.0
    )
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 100 in steps
    res = json.loads(
        run_cli("eval", "--policy", out, "--task", "push", "--episodes", "2", "--json", check=True).stdout
    )
    assert res["episodes"] == 2 and 0.0 <= res["success_rate"] <= 1.0
    assert res["latency_p50_ms"] > 0 and res["mean_length"] >= 1 and len(res["ci95"]) == 2
    if family == "diffusion":  # fixed seeds fix the sampler noise too: the worker count changes nothing
        again = run_cli(
            "eval", "--policy", out, "--task", "push", "--episodes", "2", "--workers", "2", "--json"
        )
        assert json.loads(again.stdout)["per_episode"] == res["per_episode"]


def test_same_seed_same_weights_and_resume(tmp_path, push_store):
    args = [
        "train",
        "--policy",
        "diffusion",
        "--data",
        push_store,
        "--steps",
        "20",
        "--eval.episodes=0",
        *TINY,
        *FAST,
    ]
    run_cli(*args, "--out", tmp_path / "a", check=True)
    run_cli(*args, "--out", tmp_path / "b", check=True)
    wa = load_file(str(tmp_path / "a/checkpoints/step_00000020/model.safetensors"))
    wb = load_file(str(tmp_path / "b/checkpoints/step_00000020/model.safetensors"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    run_cli(*args, "--out", tmp_path / "c", "--seed", "1", check=True)
    wc = load_file(str(tmp_path / "c/checkpoints/step_00000020/model.safetensors"))
    assert any(not (wa[k] == wc[k]).all() for k in wa)
    assert_one_line_error(run_cli(*args, "--out", tmp_path / "a"), "already exists")
    walls = [r["train_s"] for r in map(json.loads, (tmp_path / "a/metrics.jsonl").read_text().splitlines())]
    run_cli("train", "--out", tmp_path / "a", "--resume", "--steps", "30", check=True)
    assert (tmp_path / "a/checkpoints/step_00000030/model.safetensors").exists()
    resumed = [json.loads(x) for x in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert (
        resumed[-1]["step"] == 30 and resumed[-1]["train_s"] > walls[-1] > 0
    )  # wall time carried across resume


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, push_store):
    """A run stopped after its step-20 checkpoint (later checkpoints gone, as after a kill) and resumed ends with
    the very weights, EMA and optimiser state of the same run trained in one go."""
    import shutil

    args = ["train", "--policy", "diffusion", "--data", push_store, "--steps", "30", "--save_every=10",
            "--eval.episodes=0", *TINY, *FAST]  # fmt: skip
    run_cli(*args, "--out", tmp_path / "whole", check=True)
    run_cli(*args, "--out", tmp_path / "cut", check=True)
    cut = tmp_path / "cut" / "checkpoints"
    shutil.rmtree(cut / "step_00000030")
    (cut / "last").write_text("step_00000020")
    run_cli("train", "--out", tmp_path / "cut", "--resume", check=True)
    for name in ("model.safetensors",):
        a = load_file(str(tmp_path / "whole/checkpoints/step_00000030" / name))
        b = load_file(str(cut / "step_00000030" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    extra = sorted(p.name for p in (tmp_path / "whole/checkpoints/step_00000030").iterdir())
    for name in extra:
        if name.endswith(".safetensors"):
            a = load_file(str(tmp_path / "whole/checkpoints/step_00000030" / name))
            b = load_file(str(cut / "step_00000030" / name))
            assert all(torch.equal(a[k], b[k]) for k in a), name
        elif name.endswith(".pt"):
            a = torch.load(tmp_path / "whole/checkpoints/step_00000030" / name, weights_only=False)
            b = torch.load(cut / "step_00000030" / name, weights_only=False)
            assert _same(a, b), name


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a if k != "train_s")
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_compiled_training(tmp_path, push_store):
    out = tmp_path / "compiled"
    args = ["train", "--policy", "gaussian", "--data", push_store, "--steps", "20", "--eval.episodes=0"]
    run_cli(*args, "--out", out, "--compile=true", *family_args("gaussian"), *FAST, check=True)
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert "compile: true" in (out / "config.yaml").read_text()
    res = run_cli("eval", "--policy", out, "--task", "push", "--episodes", "1", "--json", check=True)
    assert json.loads(res.stdout)["episodes"] == 1


def test_ddp_two_processes_on_cpu(tmp_path, push_store):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
        "robostack.cli.main", "train", "--policy", "diffusion", "--data", str(push_store), "--out",
        str(tmp_path / "ddp"), "--steps", "10", "--eval.episodes=0", *TINY, *FAST,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "ddp.json").read_text())
    assert ddp["world_size"] == 2 and ddp["in_sync"], ddp
    assert (tmp_path / "ddp/checkpoints/step_00000010/model.safetensors").exists()


def test_bad_training_and_eval_input(tmp_path, push_store):
    """Refusals in this process (run_cli_here); one of them, and the training run, through a real process."""
    base = ["train", "--policy", "diffusion", "--data", push_store, "--steps", "5", *TINY, *FAST]
    assert_one_line_error(
        run_cli_here(*base, "--out", tmp_path / "x", "--policy.obs_keys=[obs/nope]"),
        "missing key(s) obs/nope",
    )
    assert_one_line_error(
        run_cli_here(*base, "--out", tmp_path / "x", "--optim.lrr=1"), "unknown config key(s) optim.lrr"
    )
    assert_one_line_error(
        run_cli_here(*base, "--out", tmp_path / "x", "--policy.horizon=10"), "divisible by 4"
    )
    assert_one_line_error(
        run_cli_here("train", "--policy", "diffusion", "--out", tmp_path / "x"), "data.path is required"
    )
    assert_one_line_error(
        run_cli_here(
            *[tmp_path / "nope.zarr" if a == push_store else a for a in base], "--out", tmp_path / "x"
        ),
        "not a zarr store",
    )
    assert_one_line_error(  # behaviour cloning takes one store (iql/famo2o take several)
        run_cli_here(*base, "--out", tmp_path / "x", "--data", push_store), "trains on one store"
    )
    run_cli(*base, "--out", tmp_path / "ok", "--eval.episodes=0", check=True)
    assert_one_line_error(
        run_cli_here("eval", "--policy", tmp_path / "ok", "--task", "fly"), "unknown task 'fly'"
    )
    assert_one_line_error(run_cli_here("eval", "--policy", tmp_path / "ok", "--task", "lift"), "task 'lift'")
    assert_one_line_error(
        run_cli_here("eval", "--policy", tmp_path, "--task", "push"), "neither a policy folder"
    )
    (tmp_path / "ok/checkpoints/step_00000005/model.safetensors").write_bytes(b"garbage")
    assert_one_line_error(
        run_cli("eval", "--policy", tmp_path / "ok", "--task", "push"), "unreadable weights"
    )


@pytest.mark.robosuite
def test_camera_policy_end_to_end(tmp_path):
    store = tmp_path / "lift_cam.zarr"
    run_cli(
        "sim", "demos", "--task", "lift", "--episodes", "2", "--cameras", "agentview", "--image-size", "32",
        "--out", store, check=True,
    )  # fmt: skip
    out = tmp_path / "cam"
    run_cli(
        "train", "--policy", "diffusion", "--data", store, "--out", out, "--steps", "10", "--eval.episodes=0",
        "--policy.unet.image_feature_dim=16", "--policy.num_inference_steps=2", *TINY, *FAST, check=True,
    )  # fmt: skip
    meta = json.loads((out / "checkpoints/step_00000010/policy.json").read_text())
    assert meta["spec"]["obs"]["obs/image_agentview"]["shape"] == [32, 32, 3]
    res = json.loads(
        run_cli("eval", "--policy", out, "--task", "lift", "--episodes", "1", "--json", check=True).stdout
    )
    assert res["episodes"] == 1
    # The exported graph includes the ResNet-18 image encoder: uint8 frames in, clipped actions out.
    proc = run_cli("export", "--policy", out, "--out", tmp_path / "cam.onnx", check=True)
    parity = float(proc.stdout.split("max |ONNX - PyTorch| (fp32)")[1].split()[0])
    assert parity <= 1e-5
    res = json.loads(
        run_cli(
            "eval", "--policy", tmp_path / "cam.onnx", "--task", "lift", "--episodes", "1", "--json"
        ).stdout
    )
    assert res["episodes"] == 1
