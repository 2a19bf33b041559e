"""Shared fixtures. Every cache a dependency might write is redirected into pytest's temporary folders."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "robostack"
ROBOSTACK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "robostack.cli.main"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("caches")
    for var, sub in [
        ("ROS_LOG_DIR", "ros_log"),
        ("HF_HOME", "hf"),
        ("MPLCONFIGDIR", "mpl"),
        ("XDG_CACHE_HOME", "xdg"),
    ]:
        os.environ.setdefault(var, str(base / sub))
    os.environ["MPLBACKEND"] = "Agg"
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_cli(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real ``robostack`` CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [*ROBOSTACK, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=os.environ.copy(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"robostack {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}"
        )
    return proc


def run_cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's own entry point (argument parsing, error handling, exit code) in this process, for refusals that
    happen before any work: a fresh interpreter costs ~5 s of imports per call, and ``run_cli`` already covers the
    process boundary."""
    from robostack.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["robostack", *map(str, args)], code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A user-facing failure: non-zero exit, one clear line, no traceback."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="session")
def push_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 expert push episodes made through the CLI (shared, read-only)."""
    path = tmp_path_factory.mktemp("push") / "push.zarr"
    run_cli("sim", "demos", "--task", "push", "--episodes", "20", "--out", path, "--seed", "0", check=True)
    return path


def random_episode(features: dict, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for k, spec in features.items():
        shape = (length, *spec.shape)
        if spec.dtype == "bool":
            out[k] = rng.random(shape) < 0.5
        elif spec.dtype == "uint8":
            out[k] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            out[k] = rng.normal(size=shape).astype(spec.dtype)
    return out
