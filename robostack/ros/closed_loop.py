"""Evaluate an exported policy in closed loop through ROS 2: ``sim_robot_node`` + ``policy_node`` as separate
processes talking over DDS, episodes on the same seeds as ``robostack eval``, success counted from the sim robot's
episode reports. Used by ``robostack eval --ros`` and the quickstart's last stage.

Each run gets its own ROS domain id so that concurrent runs (tests, benchmarks) never hear each other.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robostack.errors import RobostackError
from robostack.eval.metrics import wilson_interval


@dataclass
class ClosedLoopConfig:
    model: str
    task: str = "push"
    episodes: int = 20
    seed: int = 100_000
    n_action_steps: int = 0
    """Actions executed per chunk (0: the model's own)."""
    max_obs_age_s: float = 0.25
    timeout_s: float = 0.0
    """Give up after this long (0: from the episodes' worst-case length, plus start-up)."""


@dataclass
class ClosedLoopResult:
    task: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    seconds: float
    per_episode: list[dict[str, Any]] = field(default_factory=list)
    policy_status: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def topic_map_for(
    spec: Any, prefix: str = "/robot", command_topic: str = "/robot/commands"
) -> dict[str, Any]:
    """The sim robot publishes every observation key on ``<prefix>/<key>``: map the model's keys to those."""
    obs = {}
    for key, fs in spec.obs.items():
        if fs.dtype == "uint8":
            raise RobostackError(
                "closed-loop ROS evaluation covers low-dim policies (the sim robot has no cameras)"
            )
        obs[key] = {"topic": f"{prefix}/{key.removeprefix('obs/')}", "type": "float32_array"}
    return {"observations": obs, "command": {"type": "float64_array", "topic": command_topic}}


def _node(module: str, params: dict[str, Any], env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", f"robostack.ros.{module}", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def _spin_until(node: Any, done: Any, procs: list, end: float, error: Any) -> None:
    """Spin ``node`` until ``done()``; a node process that exits, or the deadline, raises ``error(why)``."""
    import rclpy

    while not done():
        rclpy.spin_once(node, timeout_sec=0.1)
        if any(p.poll() is not None for p in procs):
            raise RobostackError(error("a node exited"))
        if time.monotonic() > end:
            raise RobostackError(error("timed out"))


def _stop(procs: list) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_closed_loop(cfg: ClosedLoopConfig) -> ClosedLoopResult:
    try:
        import rclpy
        from std_msgs.msg import String
    except ImportError as exc:
        raise RobostackError(
            f"ROS 2 (rclpy) is not installed here ({exc}); pip install -e '.[ros]'"
        ) from None
    from robostack.runtime.model_meta import read_model_meta
    from robostack.sim.registry import task_spec

    meta = read_model_meta(cfg.model)
    tspec = task_spec(cfg.task)
    if cfg.episodes < 1:
        raise RobostackError("--episodes must be at least 1")
    domain = random.randint(1, 200)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    timeout = cfg.timeout_s or 60 + 1.5 * cfg.episodes * tspec.max_steps / tspec.control_rate_hz
    work = Path(tempfile.mkdtemp(prefix="robostack-ros-eval-"))
    (work / "topic_map.yaml").write_text(yaml.safe_dump(topic_map_for(meta.spec)))
    reports: list[dict[str, Any]] = []
    status: list[dict[str, Any]] = []
    rclpy.init(domain_id=domain)
    procs: list[subprocess.Popen] = []
    t0 = time.perf_counter()
    try:
        node = rclpy.create_node("closed_loop_eval")
        node.create_subscription(
            String, "/sim_robot_node/episode", lambda m: reports.append(json.loads(m.data)), 50
        )
        node.create_subscription(
            String, "/policy_node/status", lambda m: status.append(json.loads(m.data)), 10
        )
        procs.append(_node("policy_node", {
            "model": str(Path(cfg.model).resolve()), "topic_map": str(work / "topic_map.yaml"), "autostart": True,
            "reset_topic": "/robot/episode_start", "n_action_steps": cfg.n_action_steps, "threads": 1,
            "max_obs_age_s": cfg.max_obs_age_s,
        }, env, work / "policy_node.log"))  # fmt: skip
        end = time.monotonic() + timeout
        _spin_until(node, lambda: any(s.get("state") == "active" for s in status), procs, end,
                    lambda why: f"policy_node did not become active: {why} (log: {work / 'policy_node.log'})")  # fmt: skip
        procs.append(_node("sim_robot_node", {
            "task": cfg.task, "seed": cfg.seed, "episodes": cfg.episodes, "prefix": "/robot",
            "command_topic": "/robot/commands", "start_delay_s": 0.5,
        }, env, work / "sim_robot_node.log"))  # fmt: skip
        _spin_until(node, lambda: len(reports) >= cfg.episodes, procs, end,
                    lambda why: f"closed-loop evaluation stopped: {why} (logs in {work})")  # fmt: skip
        node.destroy_node()
    finally:
        _stop(procs)
        rclpy.shutdown()
    n_succ = sum(bool(r["success"]) for r in reports[: cfg.episodes])
    return ClosedLoopResult(
        task=cfg.task,
        episodes=cfg.episodes,
        successes=n_succ,
        success_rate=n_succ / cfg.episodes,
        ci95=wilson_interval(n_succ, cfg.episodes),
        seconds=time.perf_counter() - t0,
        per_episode=reports[: cfg.episodes],
        policy_status=status[-1] if status else {},
    )
