"""The README's main job, as a user runs it (small episode count)."""

from __future__ import annotations

import json

from robostack.data import EpisodeStore

from conftest import run_cli


def test_quickstart_runs_every_stage(tmp_path):
    out = tmp_path / "qs"
    proc = run_cli("quickstart", "--out", out, "--episodes", "12", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    for stage in ("stage 1", "stage 2", "stage 3", "stage 4"):
        assert stage in proc.stdout
    assert "demos.zarr: ok" in proc.stdout and "success rate     100.0%" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["episodes"] == 12 and result["success_rate"] >= 0.95
    png = out / "trajectories.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert EpisodeStore(out / "demos.zarr").n_episodes == 12
    assert json.loads((out / "quickstart.json").read_text())["episodes"] == 12
    # rerunning starts clean instead of appending
    assert run_cli("quickstart", "--out", out, "--episodes", "5", "--workers", "1").returncode == 0
    assert EpisodeStore(out / "demos.zarr").n_episodes == 5
