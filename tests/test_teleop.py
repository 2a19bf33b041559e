"""``robostack teleop`` with scripted devices, as an operator session runs through the CLI: takeover spans, both
actions and the hand-back are exactly what the script did; discarded episodes leave no trace; recordings replay
exactly; a killed session keeps its committed episodes; stores from every tool merge; bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from robostack.data import EpisodeStore
from robostack.teleop.mapping import DeviceState, parse_mapping

from conftest import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chunk_run(tmp_path_factory, push_store):
    """A push policy that plans 4-action chunks (so a stale queue at a hand-back would show)."""
    out = tmp_path_factory.mktemp("teleop") / "bc"
    run_cli(
        "train", "--policy", "gaussian", "--data", push_store, "--out", out, "--steps", "60",
        "--policy.horizon=4", "--policy.n_action_steps=4", "--policy.hidden_dims=[32,32]", "--eval.episodes=0",
        check=True,
    )  # fmt: skip
    return out


def write_script(path: Path, events: list[dict], **extra) -> str:
    path.write_text(yaml.safe_dump({"events": events, **extra}))
    return f"script:{path}"


def test_scripted_session_records_exactly_what_the_script_did(tmp_path, chunk_run):
    script = write_script(
        tmp_path / "s.yaml",
        [
            {"episode": 0, "step": 10, "press": ["left shift", "right"]},
            {"episode": 0, "step": 20, "release": ["left shift", "right"]},
            {"episode": 0, "step": 25, "press": ["left shift"]},  # takeover with nothing deflected: zeros
            {"episode": 0, "step": 27, "release": ["left shift"]},
            {"episode": 0, "step": 40, "tap": ["n"]},
            {"episode": 1, "step": 5, "press": ["left shift", "up"]},
            {"episode": 1, "step": 8, "tap": ["backspace"]},  # discarded: never committed
            {"episode": 2, "step": 3, "tap": ["0"]},  # the operator marks a failure
            {"episode": 2, "step": 30, "tap": ["n"]},
        ],
    )
    out = tmp_path / "s.zarr"
    log = tmp_path / "log.json"
    proc = run_cli("teleop", "--task", "push", "--policy", chunk_run, "--device", script, "--out", out,
                   "--episodes", "5", "--seed", "7", "--log", log)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "takeovers per episode" in proc.stdout and (tmp_path / "s.timeline.png").stat().st_size > 5_000
    store = EpisodeStore(out)
    eps = store.episodes()
    assert [e.seed for e in eps] == [7, 9] and [e.length for e in eps] == [40, 30]  # seed 8 was discarded
    assert store.n_steps == 70 and [e.source for e in eps] == ["intervention"] * 2
    d0 = store.read_episode(0)
    flags = d0["is_intervention"]
    assert np.flatnonzero(flags).tolist() == [*range(10, 20), 25, 26]
    np.testing.assert_array_equal(d0["human_action"][10:20], np.tile([1.0, 0.0], (10, 1)))
    np.testing.assert_array_equal(d0["human_action"][25:27], np.zeros((2, 2)))
    np.testing.assert_array_equal(d0["action"][flags], d0["human_action"][flags])
    np.testing.assert_array_equal(d0["action"][~flags], d0["policy_action"][~flags])
    assert d0["truncated"][-1] and not d0["truncated"][:-1].any()  # 'n' ended it
    # the operator's mark wins, the task's own check is kept beside it
    assert not eps[1].success
    assert store.attrs["operator_overrides"][0]["episode"] == 1
    assert store.attrs["teleop"]["device"] == script
    # the policy's proposals are exactly a fresh policy's on the recorded observations, with the queue dropped at
    # every hand-back (re-planned there from the current observations, never a chunk planned before the takeover)
    from robostack.runtime.loader import load_any_policy

    policy = load_any_policy(chunk_run)
    policy.reset()
    replanned = []
    for t in range(40):
        if t > 0 and flags[t - 1] and not flags[t]:
            policy.drop_pending()
            replanned.append((t, policy.will_plan))
        obs = {k: d0[k][t] for k in d0 if k.startswith("obs/")}
        np.testing.assert_allclose(policy.select_action(obs), d0["policy_action"][t], rtol=0, atol=1e-6)
    assert replanned == [(20, True), (27, True)]
    sessions = json.loads(log.read_text())["episodes"]
    assert [s["committed"] for s in sessions] == [True, False, True]
    assert sessions[0]["human_spans"] == [[10, 20], [25, 27]] and sessions[0]["takeovers"] == 2
    # a recorded episode replays exactly
    proc = run_cli("sim", "replay", out, "--episode", "1")
    assert proc.returncode == 0 and "deterministic" in proc.stdout, proc.stdout + proc.stderr


def test_toggle_takeover_and_teleoperated_lift_with_gripper(tmp_path):
    """Without a policy the human drives every step (source 'teleop'); the gripper key toggles its element."""
    script = write_script(
        tmp_path / "l.yaml",
        [
            {"episode": 0, "step": 0, "press": ["w"]},
            {"episode": 0, "step": 3, "release": ["w"], "tap": ["space"]},
            {"episode": 0, "step": 6, "tap": ["space"]},
            {"episode": 0, "step": 8, "tap": ["n"]},
        ],
    )
    out = tmp_path / "lift.zarr"
    proc = run_cli("teleop", "--task", "lift", "--device", script, "--out", out, "--episodes", "1")
    assert proc.returncode == 0, proc.stderr
    store = EpisodeStore(out)
    (ep,) = store.episodes()
    assert ep.source == "teleop" and ep.length == 8 and "policy_action" not in store.keys
    d = store.read_episode(0)
    assert not d["is_intervention"].any()
    np.testing.assert_array_equal(d["action"], d["human_action"])
    np.testing.assert_allclose(d["action"][:3, 2], 0.6)  # w: +z at the mapping's scale
    assert (d["action"][3:, 2] == 0).all()
    np.testing.assert_array_equal(
        d["action"][:, 6], [-1, -1, -1, 1, 1, 1, -1, -1]
    )  # space toggles the gripper
    proc = run_cli("sim", "replay", out, "--episode", "0", "--tolerance", "1e-6")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_toggle_mode_switches_on_press(tmp_path, chunk_run):
    script = write_script(
        tmp_path / "t.yaml",
        [{"episode": 0, "step": 4, "tap": ["left shift"]}, {"episode": 0, "step": 9, "tap": ["left shift"]},
         {"episode": 0, "step": 12, "tap": ["n"]}],
    )  # fmt: skip
    out = tmp_path / "t.zarr"
    proc = run_cli("teleop", "--task", "push", "--policy", chunk_run, "--device", script, "--out", out,
                   "--episodes", "1", "--takeover", "toggle")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert np.flatnonzero(EpisodeStore(out).read("is_intervention")).tolist() == [4, 5, 6, 7, 8]


def test_killed_session_keeps_committed_episodes_and_the_store_appends(tmp_path, chunk_run):
    script = write_script(
        tmp_path / "k.yaml", [{"episode": 0, "step": 5, "tap": ["n"]}, {"episode": 1, "step": 5, "tap": ["n"]}],
        end="run",
    )  # fmt: skip
    out = tmp_path / "k.zarr"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "robostack.cli.main", "teleop", "--task", "push", "--policy", str(chunk_run),
         "--device", script, "--out", str(out), "--episodes", "50", "--realtime"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if (out / "zarr.json").exists() and EpisodeStore(out).n_episodes >= 2:
                break
        time.sleep(1.0)  # mid-episode: episodes after the second run to the time limit (10 s at 20 Hz)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    store = EpisodeStore(out)
    assert store.n_episodes >= 2 and [e.length for e in store.episodes()][:2] == [5, 5]
    assert run_cli("data", "validate", out).returncode == 0
    more = write_script(tmp_path / "m.yaml", [{"episode": 0, "step": 3, "tap": ["n"]}])
    n = store.n_episodes
    proc = run_cli(
        "teleop", "--task", "push", "--policy", chunk_run, "--device", more, "--out", out, "--episodes", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert EpisodeStore(out).n_episodes == n + 1


def test_teleop_sim_and_merged_stores(tmp_path, chunk_run, push_store):
    script = write_script(tmp_path / "s.yaml", [{"episode": 0, "step": 6, "tap": ["n"]}])
    tele = tmp_path / "tele.zarr"
    assert run_cli("teleop", "--task", "push", "--policy", chunk_run, "--device", script, "--out", tele,
                   "--episodes", "1").returncode == 0  # fmt: skip
    proc = run_cli("data", "merge", push_store, tele, "--out", tmp_path / "shared.zarr")
    assert proc.returncode == 0, proc.stderr
    assert "key 'policy_action' left out" in proc.stdout and "key 'human_action' left out" in proc.stdout
    shared = EpisodeStore(tmp_path / "shared.zarr")
    assert "human_action" not in shared.keys and shared.n_episodes == EpisodeStore(push_store).n_episodes + 1
    proc = run_cli("data", "merge", push_store, tele, "--out", tmp_path / "fill.zarr", "--keys", "fill")
    assert proc.returncode == 0, proc.stderr
    filled = EpisodeStore(tmp_path / "fill.zarr")
    d = filled.read_episode(0)
    np.testing.assert_array_equal(
        d["human_action"], d["action"]
    )  # a sim demo: the actor's command is the action
    last = filled.read_episode(filled.n_episodes - 1)
    np.testing.assert_array_equal(last["policy_action"], EpisodeStore(tele).read("policy_action"))


def test_mapping_rules():
    raw = {
        "task": "lift", "device": "gamepad",
        "action": [{"index": 0, "axis": "axis1", "scale": -0.5, "deadzone": 0.2}],
        "gripper": {"index": 6, "button": "button0"},
        "controls": {"takeover": "button4"},
    }  # fmt: skip
    m = parse_mapping(raw, 7)
    a = m.command(DeviceState({"axis1": 0.6}, frozenset()), gripper_closed=True, action_dim=7)
    assert a[0] == pytest.approx(-0.5 * (0.6 - 0.2) / 0.8) and a[6] == 1.0 and not a[1:6].any()
    assert m.command(DeviceState({"axis1": 0.1}, frozenset()), False, 7)[0] == 0.0  # inside the dead zone
    assert m.command(DeviceState({"axis1": -1.0}, frozenset()), False, 7)[6] == -1.0


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"bogus": 1}, "unknown key(s) bogus"),
        ({"action": [{"index": 9, "keys": ["a", "d"]}]}, "action index 9 out of range"),
        ({"action": [{"index": 0, "keys": ["a", "nokey"]}]}, "unknown key 'nokey'"),
        ({"action": [{"index": 0, "axis": "axis0"}]}, "a keyboard has no axes"),
        ({"controls": {"next": "n"}}, "controls.takeover is required"),
        ({"device": "wiimote"}, "device must be one of"),
    ],
)
def test_bad_mapping_files_are_one_line(tmp_path, patch, fragment):
    raw = yaml.safe_load((ROOT / "configs/teleop/push_keyboard.yaml").read_text())
    raw.update(patch)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw))
    script = write_script(tmp_path / "s.yaml", [])
    proc = run_cli("teleop", "--task", "push", "--device", script, "--mapping", tmp_path / "m.yaml",
                   "--out", tmp_path / "o.zarr")  # fmt: skip
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "o.zarr").exists()


def test_bad_input_is_one_line(tmp_path, chunk_run, push_store):
    script = write_script(tmp_path / "s.yaml", [{"episode": 0, "step": 1, "tap": ["n"]}])
    assert_one_line_error(
        run_cli("teleop", "--task", "push", "--device", "wiimote", "--out", tmp_path / "a.zarr"),
        "unknown device",
    )
    assert_one_line_error(
        run_cli(
            "teleop",
            "--task",
            "lift",
            "--policy",
            chunk_run,
            "--device",
            script,
            "--out",
            tmp_path / "b.zarr",
        ),
        "task 'lift'",
    )
    lift_script = write_script(tmp_path / "l.yaml", [{"episode": 0, "step": 1, "tap": ["n"]}])
    assert_one_line_error(
        run_cli("teleop", "--task", "lift", "--device", lift_script, "--out", push_store),
        "recorded for task 'push'",
    )
    bad = write_script(tmp_path / "x.yaml", [{"episode": 0, "step": 1, "press": ["q"]}])
    assert_one_line_error(
        run_cli("teleop", "--task", "push", "--device", bad, "--out", tmp_path / "c.zarr"), "does not bind"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    proc = subprocess.run(
        [sys.executable, "-m", "robostack.cli.main", "teleop", "--task", "push", "--device", "keyboard",
         "--out", str(tmp_path / "d.zarr")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert_one_line_error(proc, "no display", "script:FILE", "Xvfb")
    assert_one_line_error(
        run_cli("teleop", "--task", "push", "--device", "spacemouse", "--out", tmp_path / "e.zarr"),
        "SpaceMouse",
    )
    assert_one_line_error(
        run_cli("teleop", "--task", "push", "--device", "gamepad", "--out", tmp_path / "f.zarr"),
        "no gamepad found",
    )


def test_teleop_sessions_update_the_policy_that_then_drives_the_ros_closed_loop(tmp_path, push_store):
    """The lab's loop from the operator's side: deploy a single-step policy, take over with the scripted device,
    `finetune --algo rlif --data SESSIONS.zarr` (no simulator, no task reward), export, and the next model drives
    the simulated robot through ROS (real rclpy processes)."""
    start = tmp_path / "start"
    run_cli(
        "train", "--policy", "gaussian", "--data", push_store, "--out", start, "--steps", "40",
        "--policy.horizon=1", "--policy.n_action_steps=1", "--policy.hidden_dims=[32,32]", "--eval.episodes=0",
        check=True,
    )  # fmt: skip
    script = write_script(
        tmp_path / "s.yaml",
        [
            {"episode": 0, "step": 5, "press": ["left shift", "right"]},
            {"episode": 0, "step": 12, "release": ["left shift", "right"]},
            {"episode": 0, "step": 30, "tap": ["n"]},
            {"episode": 1, "step": 8, "press": ["left shift", "up"]},
            {"episode": 1, "step": 15, "release": ["left shift", "up"]},
            {"episode": 1, "step": 25, "tap": ["n"]},
        ],
    )
    sessions = tmp_path / "sessions.zarr"
    run_cli("teleop", "--task", "push", "--policy", start, "--device", script, "--out", sessions,
            "--episodes", "2", check=True)  # fmt: skip
    out = tmp_path / "rlif"
    proc = run_cli("finetune", "--algo", "rlif", "--from", start, "--data", sessions, "--out", out,
                   "--updates=20", "--sac.batch_size=16", "--sac.critics=4", "--log_every=10")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    # 30 + 25 recorded steps; an episode the operator ended ('n') has no next observation after its last step
    assert EpisodeStore(sessions).n_steps == 55 and first["transitions"] == 53
    assert first["takeover_onsets"] == 2  # one per scripted takeover
    model = tmp_path / "next.onnx"
    assert run_cli("export", "--policy", out, "--out", model).returncode == 0
    proc = run_cli("eval", "--policy", model, "--task", "push", "--episodes", "1", "--ros", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["episodes"] == 1 and res["policy_status"]["commands"] > 0
