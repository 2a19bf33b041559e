"""The teleop tool's numbers (README): device event -> executed command, and control / display rates.

1. Script device, paced at the task's rate: the time from the poll that applied a scripted event to the moment the
   command goes to the simulator (the tool's own log), over every event of the script.
2. Real key presses under Xvfb: ``xdotool key`` toggles the takeover (``--takeover toggle``) ``--presses`` times;
   the latency is from just before each xdotool call to the wall-clock time the tool sent the takeover's first
   human command to the simulator (``takeover_wall_times`` in its log). It includes xdotool's start-up, the X
   server and the wait for the next control step (up to one period).
3. Display and control rates of the real window for each task (``--tasks``), its 256x256 view, with a policy in the
   loop and no input (the policy drives whole episodes).

    python benchmarks/teleop_latency.py --push-policy RUN [--lift-policy RUN] [--can-policy RUN] \
        --out benchmarks/results/teleop.md

Needs Debian's xvfb and xdotool. Each tool run is a real ``robostack teleop`` process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_teleop_window import find_window, start_xvfb, x  # noqa: E402

PERIOD_MS = 50.0  # every task runs at 20 Hz


def tool(args: list[str], display: str | None = None) -> subprocess.Popen:
    env = {**os.environ}
    if display:
        env["DISPLAY"] = display
    return subprocess.Popen([sys.executable, "-m", "robostack.cli.main", "teleop", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def pct(v: list[float]) -> str:
    a = np.asarray(v) * 1e3
    return f"{np.percentile(a, 50):.2f} / {np.percentile(a, 99):.2f} / {a.max():.2f} ms (n={len(a)})"


def scripted(policy: str, tmp: Path) -> list[float]:
    events = []
    for ep in range(3):
        for k in range(5):
            s = 10 + 30 * k
            events += [{"episode": ep, "step": s, "press": ["left shift", "right"]},
                       {"episode": ep, "step": s + 10, "release": ["left shift", "right"]}]  # fmt: skip
    (tmp / "s.yaml").write_text(yaml.safe_dump({"events": events}))
    p = tool(["--task", "push", "--policy", policy, "--device", f"script:{tmp / 's.yaml'}", "--out",
              str(tmp / "s.zarr"), "--episodes", "3", "--realtime", "--log", str(tmp / "s.json")])  # fmt: skip
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return [t for e in json.loads((tmp / "s.json").read_text())["episodes"] for t in e["latencies_s"]]


def untrained_push_policy(tmp: Path) -> str:
    """An untrained policy: its episodes run to the time limit, so every key press lands inside an episode."""
    subprocess.run([sys.executable, "-m", "robostack.cli.main", "sim", "demos", "--task", "push", "--episodes", "2",
                    "--out", str(tmp / "d.zarr")], check=True, capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "robostack.cli.main", "train", "--policy", "gaussian", "--data",
                    str(tmp / "d.zarr"), "--out", str(tmp / "u"), "--steps", "1", "--eval.episodes=0"],
                   check=True, capture_output=True)  # fmt: skip
    return str(tmp / "u")


def real_keys(policy: str, tmp: Path, presses: int) -> list[float]:
    xvfb, display = start_xvfb()
    p = tool(["--task", "push", "--policy", policy, "--device", "keyboard", "--out", str(tmp / "k.zarr"),
              "--episodes", "1", "--takeover", "toggle", "--log", str(tmp / "k.json")], display)  # fmt: skip
    sent = []
    try:
        wid = find_window(display, "robostack teleop: push")
        time.sleep(3.0)
        x(display, "xdotool", "windowfocus", "--sync", wid)
        for i in range(2 * presses):
            time.sleep(0.2 + 0.137 * (i % 3))  # off the control grid
            if i % 2 == 0:
                sent.append(time.time())
            x(display, "xdotool", "key", "Shift_L")
        time.sleep(0.3)
        x(display, "xdotool", "key", "n")
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
        xvfb.kill()
    assert p.returncode == 0, err
    got = json.loads((tmp / "k.json").read_text())["episodes"][0]["takeover_wall_times"]
    assert len(got) == len(sent), (len(got), len(sent))
    return [g - s for g, s in zip(got, sent, strict=True)]


def rates(task: str, policy: str, tmp: Path, seconds: float) -> dict:
    xvfb, display = start_xvfb()
    p = tool(["--task", task, "--policy", policy, "--device", "keyboard", "--out", str(tmp / f"{task}.zarr"),
              "--episodes", "50", "--view-size", "256", "--auto-next", "--log", str(tmp / f"{task}.json")],
             display)  # fmt: skip
    try:
        wid = find_window(display, f"robostack teleop: {task}")
        time.sleep(seconds)
        x(display, "xdotool", "windowfocus", "--sync", wid)
        for _ in range(6):  # quit (the tool may be waiting for 'n' between episodes, or mid-episode)
            x(display, "xdotool", "key", "Escape")
            time.sleep(0.5)
            if p.poll() is not None:
                break
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
        xvfb.kill()
    assert p.returncode == 0, err
    return json.loads((tmp / f"{task}.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--push-policy", required=True)
    ap.add_argument("--lift-policy", default=None)
    ap.add_argument("--can-policy", default=None)
    ap.add_argument(
        "--presses", type=int, default=12, help="takeovers by real key presses (inside one 10 s episode)"
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="window time per task for the rates")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = ["# Teleop tool: event-to-command latency and rates", "", f"`python {' '.join(sys.argv)}`", ""]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        s = scripted(args.push_policy, tmp)
        k = real_keys(untrained_push_policy(tmp), tmp, args.presses)
        xvfb, display = start_xvfb()
        spawn = []
        for _ in range(20):  # what an xdotool call itself costs (process start, X round trip)
            t0 = time.time()
            x(display, "xdotool", "getmouselocation")
            spawn.append(time.time() - t0)
        xvfb.kill()
        lines += [
            f"Control period: {PERIOD_MS:.0f} ms (20 Hz). p50 / p99 / max:",
            "",
            f"- script device, a trained diffusion policy in the loop, event poll -> the device's command sent to "
            f"the simulator: {pct(s)}",
            f"- real key presses under Xvfb, an untrained policy in the loop (xdotool call -> first human command "
            f"sent): {pct(k)}; within one period: {np.mean(np.asarray(k) * 1e3 <= PERIOD_MS) * 100:.0f}% of "
            f"presses. This includes the wait for the next control step (0-{PERIOD_MS:.0f} ms by design) and "
            f"xdotool's own start-up, measured alone at {pct(spawn)}.",
            "",
            "| task | policy | view | control (Hz) | display (fps) | frames dropped |",
            "|---|---|---|---|---|---|",
        ]
        for task, pol in (("push", args.push_policy), ("lift", args.lift_policy), ("can", args.can_policy)):
            if not pol:
                continue
            r = rates(task, pol, tmp, args.seconds)
            t = r["totals"]
            lines.append(
                f"| {task} | {Path(pol).name} | 256x256 | {r['rates']['control_hz']:.1f} | "
                f"{r['rates']['display_fps']:.1f} | {t['dropped_frames']} of {t['frames'] + t['dropped_frames']} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
