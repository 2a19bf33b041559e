"""The operator's real window under Xvfb: the tool starts, real key presses (xdotool, through the X server) take over
and hand back, and screenshots of the screen show the scene and the status bar with the controller indicator
changing colour. Needs Debian's xvfb, xdotool and imagemagick (installed by scripts/setup_env.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from robostack.data import EpisodeStore
from robostack.teleop.window import HUMAN_COLOR, POLICY_COLOR


def start_xvfb() -> tuple[subprocess.Popen, str]:
    r, w = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    with os.fdopen(r) as f:
        display = ":" + f.readline().strip()
    return xvfb, display


def x(display: str, *cmd: str) -> str:
    return subprocess.run(cmd, env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                          timeout=30).stdout  # fmt: skip


def find_window(display: str, title: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for wid in x(display, "xdotool", "search", "--class", "").split():
            if x(display, "xdotool", "getwindowname", wid).strip() == title:
                return wid
        time.sleep(0.5)
    raise AssertionError(f"no window '{title}' appeared")


def screenshot(display: str, path: Path) -> np.ndarray:
    x(display, "import", "-window", "root", "-depth", "8", "-type", "TrueColor", str(path))
    return imageio.imread(path)[..., :3].astype(int)


def share(img: np.ndarray, color: tuple[int, int, int]) -> float:
    return float((np.abs(img - np.array(color)).sum(axis=-1) < 30).mean())


def test_real_window_keys_take_over_and_hand_back(tmp_path, push_store):
    from conftest import run_cli

    run = tmp_path / "bc"
    run_cli(
        "train",
        "--policy",
        "gaussian",
        "--data",
        push_store,
        "--out",
        run,
        "--steps",
        "1",
        "--policy.horizon=1",
        "--policy.n_action_steps=1",
        "--policy.hidden_dims=[8]",
        "--eval.episodes=0",
        check=True,
    )  # fmt: skip  (an untrained policy: its episodes run to the time limit, 10 s)
    xvfb, display = start_xvfb()
    out = tmp_path / "w.zarr"
    tool = subprocess.Popen(
        [sys.executable, "-m", "robostack.cli.main", "teleop", "--task", "push", "--policy", str(run),
         "--device", "keyboard", "--out", str(out), "--episodes", "1", "--takeover", "toggle",
         "--log", str(tmp_path / "log.json")],
        env={**os.environ, "DISPLAY": display}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wid = find_window(display, "robostack teleop: push")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the window opens before the policy and the scene are loaded
            policy_shot = screenshot(display, tmp_path / "policy.png")
            if policy_shot.std() > 20:
                break
            time.sleep(0.5)
        x(display, "xdotool", "windowfocus", "--sync", wid)
        x(display, "xdotool", "key", "Shift_L")  # toggle: the human takes over
        x(display, "xdotool", "keydown", "Right")
        time.sleep(1.0)
        human_shot = screenshot(display, tmp_path / "human.png")
        x(display, "xdotool", "keyup", "Right")
        x(display, "xdotool", "key", "Shift_L")  # hand back
        time.sleep(0.5)
        x(display, "xdotool", "key", "n")  # end (commit) the episode: the session's one episode is done
        stdout, stderr = tool.communicate(timeout=60)
    finally:
        tool.kill()
        xvfb.kill()
    assert tool.returncode == 0, stderr
    # the scene is drawn (the push table is mostly light), and the indicator went from blue to orange
    assert policy_shot.std() > 20 and (policy_shot > 200).mean() > 0.05
    assert share(policy_shot, POLICY_COLOR) > 0.005 and share(policy_shot, HUMAN_COLOR) < 0.001
    assert share(human_shot, HUMAN_COLOR) > 0.005 and share(human_shot, POLICY_COLOR) < 0.001
    store = EpisodeStore(out)
    d = store.read_episode(0)
    flags = d["is_intervention"]
    onsets = np.flatnonzero(np.diff(flags.astype(int)) == 1)
    assert flags.any() and len(onsets) <= 1 and not flags[-1]  # one takeover, handed back before the end
    right = d["human_action"][flags][:, 0] == 1.0
    assert right.sum() >= 10  # ~1 s of the right arrow at 20 Hz while the human drove
    np.testing.assert_array_equal(d["action"][flags], d["human_action"][flags])
    log = json.loads((tmp_path / "log.json").read_text())["episodes"][0]
    assert log["takeovers"] == 1 and max(log["latencies_s"]) < 0.05  # key seen -> command executed
    assert "takeovers per episode" in stdout
