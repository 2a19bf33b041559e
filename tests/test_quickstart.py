"""The README's main job, as a user runs it (small episode count)."""

from __future__ import annotations

import json

from robostack.data import EpisodeStore

from conftest import assert_one_line_error, run_cli, run_cli_here


def test_quickstart_runs_every_stage(tmp_path):
    out = tmp_path / "qs"
    short = [
        "--train-steps",
        "30",
        "--eval-episodes",
        "2",
        "--no-compile",
        "--dppo-iterations",
        "1",
        "--dppo-envs",
        "2",
    ]
    proc = run_cli("quickstart", "--out", out, "--episodes", "12", "--workers", "1", *short)
    assert proc.returncode == 0, proc.stderr
    for stage in [f"stage {i}:" for i in range(1, 12)]:
        assert stage in proc.stdout
    assert "demos.zarr: ok" in proc.stdout and "success rate     100.0%" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["episodes"] == 12 and result["demo_success_rate"] >= 0.95
    assert 0.0 <= result["policy_success_rate"] <= 1.0 and result["chunk_latency_p50_ms"] > 0
    assert (out / "policy" / "training_curve.png").stat().st_size > 10_000
    assert json.loads((out / "eval.json").read_text())["episodes"] == 2
    assert result["dppo"]["iterations"] == 1 and (out / "dppo" / "checkpoints").is_dir()
    assert 0.0 <= result["bc_success_rate"] <= 1.0 and "after DPPO" in proc.stdout
    assert result["onnx_parity_max_abs"] <= 1e-5 and (out / "model.onnx").is_file()
    assert 0.0 <= result["onnx_success_rate"] <= 1.0 and result["onnx_chunk_latency_p50_ms"] > 0
    assert "ONNX (onnxruntime)" in proc.stdout
    ros = result["ros"]  # closed loop through ROS 2 on the first eval seeds
    assert ros["episodes"] == 2 and 0 <= ros["successes"] <= 2 and ros["status"]["commands"] > 0
    assert "ROS 2 closed loop" in proc.stdout
    png = out / "trajectories.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert EpisodeStore(out / "demos.zarr").n_episodes == 12
    assert json.loads((out / "quickstart.json").read_text())["episodes"] == 12
    bad = run_cli_here("quickstart", "--out", tmp_path / "x", "--policy-config", "nope.yaml")
    assert_one_line_error(bad, "nope.yaml: config file not found")
    assert not (tmp_path / "x").exists()
    # rerunning starts clean instead of appending (with a smaller recipe: the default one was checked above)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        "policy: {type: diffusion, horizon: 16, n_obs_steps: 2, n_action_steps: 8, num_inference_steps: 2,\n"
        "         unet: {down_dims: [16, 32, 64], step_embed_dim: 32, kernel_size: 5}}\n"
        "optim: {batch_size: 16, warmup_steps: 5}\n"
    )
    again = run_cli(
        "quickstart", "--out", out, "--episodes", "5", "--workers", "1", *short, "--ros-episodes", "0",
        "--dppo-iterations", "0",
        "--policy-config", tiny,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert EpisodeStore(out / "demos.zarr").n_episodes == 5
