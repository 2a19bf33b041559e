"""One operator session in simulation: a policy acts, the human takes over and hands back, every episode is streamed
into the crash-safe store with both actions.

Per control step (the task's rate): poll the device once; control presses (next, discard, success/failure marks,
pause, quit) act on their press; the takeover input decides who drives (``hold``: while held, a dead-man switch;
``toggle``: each press switches). The policy is queried at *every* step, also while the human drives, so
``policy_action`` is always what it would have done and its observation history stays current; at a hand-back its
queue of planned actions is dropped, so it re-plans from the current observations instead of executing a chunk
planned before the human moved the robot.

Recorded per step (row t = before step t, as every store): ``obs/*``, ``sim_state``, ``action`` (executed),
``policy_action`` (sessions with a policy), ``human_action`` (what the device commanded at that step, whether or not
it drove: zeros when nothing is deflected or held, the gripper element at its latched value), ``is_intervention``
(the human drove; always False without a policy: there is nothing to intervene on), ``reward``, ``terminated``,
``truncated`` (also True on the last row of an episode the operator ended with ``next``), ``timestamp`` (control
time since the episode's start). Per episode: success (the operator's mark when given, else the task's check),
source ``intervention`` (with a policy) or ``teleop``, quality ``human``, seed. Store attributes: ``teleop`` (device,
mapping, policy and its fingerprint, control rate, takeover mode) and ``operator_overrides``.

At a takeover the gripper latch starts where the last executed gripper command was (closed above its midpoint), so
taking over never drops what the robot holds. On a step the human drives, the command goes to the simulator first
and the policy's proposal is computed after it (from the same observation), so a takeover never waits for
inference.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robostack.data.schema import FeatureSpec
from robostack.errors import RobostackError
from robostack.sim.viewer import ViewThread
from robostack.teleop.devices import Device, ScriptDevice
from robostack.teleop.mapping import TeleopMapping

TAKEOVER_MODES = ("hold", "toggle")
CATCH_UP_PERIODS = 3
FRAME_SLACK = 0.4


@dataclass
class TeleopConfig:
    """One operator session (saved in the store's attributes)."""

    task: str
    device: str
    """keyboard | gamepad | spacemouse | script:FILE"""
    out: str
    policy: str | None = None
    """Training run, policy folder or exported .onnx; none: the human drives every step (teleoperated demos)."""
    episodes: int = 10
    """Episodes to commit (discarded ones do not count)."""
    seed: int | None = None
    """First episode seed (default: after the store's largest, else 0)."""
    mapping: str | None = None
    """Mapping YAML (default configs/teleop/<task>_<device>.yaml)."""
    takeover: str = "hold"
    realtime: bool = True
    """Pace control at the task's rate (off for scripts unless asked: they run as fast as the simulator)."""
    window: bool = True
    view_size: int = 256
    """Rendered view, pixels (square)."""
    wait_between_episodes: bool = True
    """After an episode ends, wait for 'next' before the next one starts (interactive devices)."""
    fsync: bool = False

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise RobostackError("--episodes must be at least 1")
        if self.takeover not in TAKEOVER_MODES:
            raise RobostackError(
                f"--takeover must be one of {', '.join(TAKEOVER_MODES)}, got '{self.takeover}'"
            )


@dataclass
class EpisodeLog:
    run_index: int
    """Episode number as the session ran them (discarded ones included): the script's ``episode``."""
    seed: int
    steps: int = 0
    success: bool = False
    task_success: bool = False
    override: bool | None = None
    committed: bool = False
    store_index: int = -1
    takeovers: int = 0
    human_steps: int = 0
    first_takeover_step: int | None = None
    human_spans: list[tuple[int, int]] = field(default_factory=list)
    """[start, end) steps the human drove."""
    latencies_s: list[float] = field(default_factory=list)
    """Device poll to the device's command going to the simulator, per human-driven step where the device reported
    an event (a script's event, a press)."""
    frames: int = 0
    """Frames drawn while the episode ran."""
    takeover_wall_times: list[float] = field(default_factory=list)
    """Wall-clock time (``time.time()``) each takeover's first human command was sent to the simulator: another
    process (a benchmark pressing keys) measures its event-to-command latency against it."""


@dataclass
class Status:
    episode: int = 0
    step: int = 0
    human: bool = False
    takeovers: int = 0
    successes: int = 0
    committed: int = 0
    recording: str = "recording"
    control_hz: float = 0.0
    display_hz: float = 0.0
    message: str = ""


class RateMeter:
    """Events per second over the last ``window`` events."""

    def __init__(self, window: int = 20) -> None:
        self.times: list[float] = []
        self.window = window

    def tick(self, t: float) -> None:
        self.times.append(t)
        del self.times[: -self.window]

    @property
    def hz(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)


def teleop_features(task: Any, with_policy: bool) -> dict[str, FeatureSpec]:
    from robostack.sim.rollout import episode_features

    feats = episode_features(task)
    a = task.task_spec.action
    if with_policy:
        feats["policy_action"] = FeatureSpec(
            a.dtype,
            a.shape,
            names=a.names,
            description="the policy's proposal at this step (also while the human drives)",
        )
    feats["human_action"] = FeatureSpec(
        a.dtype,
        a.shape,
        names=a.names,
        description="the device's command at this step (executed where is_intervention)",
    )
    return feats


class TeleopSession:
    def __init__(self, cfg: TeleopConfig, mapping: TeleopMapping, device: Device, window: Any = None) -> None:
        from robostack.eval.evaluate import check_policy_fits_task
        from robostack.eval.generate import policy_fingerprint, task_kwargs_for
        from robostack.runtime.loader import load_any_policy, read_any_spec
        from robostack.sim.registry import make_task

        self.cfg, self.mapping, self.device, self.window = cfg, mapping, device, window
        self.policy = None
        kwargs: dict[str, Any] = {}
        fingerprint = None
        if cfg.policy:
            spec = read_any_spec(cfg.policy)
            check_policy_fits_task(spec, cfg.task)
            kwargs = task_kwargs_for(spec)
            self.policy = load_any_policy(cfg.policy, threads=1)
            fingerprint = policy_fingerprint(cfg.policy)
        self.task = make_task(cfg.task, **kwargs)
        self.spec = self.task.task_spec
        self.dim = int(self.spec.action.shape[0])
        self.feats = teleop_features(self.task, self.policy is not None)
        self.writer, next_seed = self._open_store(kwargs)
        self.writer.update_attrs(
            teleop={
                "device": cfg.device,
                "mapping": mapping.path,
                "mapping_content": Path(mapping.path).read_text() if Path(mapping.path).is_file() else "",
                "policy": cfg.policy,
                "policy_fingerprint": fingerprint,
                "control_rate_hz": self.spec.control_rate_hz,
                "takeover": cfg.takeover,
            }
        )
        self.next_seed = next_seed if cfg.seed is None else cfg.seed
        self.logs: list[EpisodeLog] = []
        self.status = Status()
        self.control_rate = RateMeter()
        self.display_rate = RateMeter()
        self.quit = False
        if (
            self.policy is not None
        ):  # one-off costs (lazy kernel set-up) before the operator starts, not mid-episode
            obs, _ = self.task.reset(seed=0)
            self.policy.reset()
            self.policy.select_action({f"obs/{k}": v for k, v in obs.items()})
            self.policy.reset()
        self._blit_cost = 0.0
        self._behind = False
        self._shown = 0
        self.viewer = ViewThread(cfg.view_size, cfg.view_size) if window is not None else None
        self._in_episode = False
        self.totals = {"control_steps": 0, "frames": 0, "dropped_frames": 0, "episode_seconds": 0.0}
        """Over every episode's stepping: what ``robostack teleop`` reports as the control and display rates."""

    def _open_store(self, kwargs: dict[str, Any]) -> tuple[Any, int]:
        from robostack.data.store import EpisodeStore
        from robostack.sim.demos import open_task_store

        out = Path(self.cfg.out)
        if (out / "zarr.json").exists():
            tasks = EpisodeStore(out).info.tasks or []
            if tasks and self.cfg.task not in tasks:
                raise RobostackError(f"{out}: recorded for task '{', '.join(tasks)}', not '{self.cfg.task}'")
        return open_task_store(out, self.cfg.task, self.feats, asdict(self.cfg), kwargs, self.cfg.fsync)

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[EpisodeLog]:
        run_index = 0
        try:
            while not self.quit and self.status.committed < self.cfg.episodes:
                if isinstance(self.device, ScriptDevice) and self.device.finished(run_index):
                    break
                log = self._episode(run_index)
                self.logs.append(log)
                run_index += 1
                if (
                    not self.quit
                    and self.cfg.wait_between_episodes
                    and self.status.committed < self.cfg.episodes
                ):
                    self._wait_for_next(log, run_index)
        finally:
            if self.viewer is not None:
                self.viewer.close()
            self.device.close()
            self.writer.close()
            self.task.close()
        return self.logs

    def _pace(self, deadline: float) -> float:
        """Show the newest rendered frame if there is one and time is left, then sleep until ``deadline``; returns
        the deadline to continue from (late steps catch up, but after a stall of more than ``CATCH_UP_PERIODS``
        it moves to now: no long burst)."""
        if not self.cfg.realtime:
            return deadline
        if self.viewer is not None:
            if self.viewer.error is not None:
                raise RobostackError(f"the viewer failed: {self.viewer.error}")
            frame, n = self.viewer.latest()
            if frame is not None and n != self._shown:
                if deadline - time.perf_counter() > self._blit_cost:
                    self._draw(frame)  # blit only: rendering happens on the view thread, beside control
                    self._shown = n
                    self.totals["frames"] += self._in_episode
                else:
                    self._blit_cost *= 0.9  # an estimate inflated by one slow blit recovers
                    self.totals["dropped_frames"] += self._in_episode
        now = time.perf_counter()
        # A frame rendered beside a step slows it (two cores, a software GL): ask for the next frame only after a
        # step that left FRAME_SLACK of its period unused, so the display rate gives way before control does.
        self._behind = deadline - now < FRAME_SLACK / self.spec.control_rate_hz
        if deadline > now:
            time.sleep(deadline - now)
            return deadline
        period = 1.0 / self.spec.control_rate_hz
        return now if now - deadline > CATCH_UP_PERIODS * period else deadline

    def _draw(self, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.status.control_hz = self.control_rate.hz
        self.status.display_hz = self.display_rate.hz
        self.window.draw(frame, self.status)
        t1 = time.perf_counter()
        self._blit_cost = 0.8 * self._blit_cost + 0.2 * (t1 - t0)
        self.display_rate.tick(t1)

    def _show_state(self) -> None:
        """Hand the state to the view thread -- unless control is running late: then frames wait, steps do not."""
        if self.viewer is not None and not self._behind:
            self.viewer.submit(*self.task.view_source())

    def _wait_for_next(self, log: EpisodeLog, run_index: int) -> None:
        key = self.mapping.controls.get("next")
        self.status.message = (
            f"episode {'committed' if log.committed else 'discarded'}: press '{key}' for the next"
            if key
            else ""
        )
        if key is None:
            return
        prev: frozenset[str] = frozenset()
        deadline = time.perf_counter()
        while not self.quit:
            deadline += 1.0 / self.spec.control_rate_hz
            state = self.device.poll(run_index, -1)
            pressed = state.buttons - prev
            prev = state.buttons
            if self.mapping.controls.get("quit") in pressed or getattr(self.device, "quit_requested", False):
                self.quit = True
            if key in pressed:
                break
            deadline = self._pace(deadline)
        self.status.message = ""

    def _episode(self, run_index: int) -> EpisodeLog:
        import torch

        cfg, ctl, policy = self.cfg, self.mapping.controls, self.policy
        seed = self.next_seed
        self.next_seed += 1
        log = EpisodeLog(run_index, seed)
        obs, _ = self.task.reset(seed=seed)
        self._show_state()
        if policy is not None:
            policy.reset()
            torch.manual_seed(seed)
            if hasattr(policy, "seed"):
                policy.seed(seed)
        self.writer.begin_episode()
        st = self.status
        st.episode, st.human, st.takeovers, st.recording = run_index, False, 0, "recording"
        human = False
        gripper_closed = False
        paused = False
        prev: frozenset[str] = frozenset()
        pending: dict[str, Any] | None = None
        last_executed: np.ndarray | None = None
        success = False
        end = "time"
        period = 1.0 / self.spec.control_rate_hz
        deadline = time.perf_counter()
        step = 0
        t_start = time.perf_counter()
        self.control_rate, self.display_rate = (
            RateMeter(),
            RateMeter(),
        )  # rates of this episode, not of the wait
        frames_before = self.totals["frames"]
        self._in_episode = True
        while step < self.spec.max_steps:
            deadline += period
            t_poll = time.perf_counter()
            state = self.device.poll(run_index, step)
            pressed = state.buttons - prev
            prev = state.buttons
            if ctl.get("quit") in pressed or getattr(self.device, "quit_requested", False):
                self.quit, end = True, "quit"
                break
            if ctl.get("discard") in pressed:
                end = "discard"
                break
            if ctl.get("success") in pressed:
                log.override = True
            if ctl.get("failure") in pressed:
                log.override = False
            if ctl.get("pause") in pressed:
                if isinstance(self.device, ScriptDevice):
                    raise RobostackError("a device script cannot pause (its steps would stop advancing)")
                paused = not paused
            if paused:
                st.recording = "paused"
                deadline = self._pace(deadline)
                continue
            st.recording = "recording"
            if ctl.get("next") in pressed and step > 0:
                end = "next"
                break
            was_human = human
            if policy is None:
                human = True
            elif cfg.takeover == "hold":
                human = ctl["takeover"] in state.buttons
            elif ctl["takeover"] in pressed:
                human = not human
            grip = self.mapping.gripper
            policy_action = None
            frame = {f"obs/{k}": v for k, v in obs.items()}
            if policy is not None and not human:
                if was_human:
                    policy.drop_pending()
                policy_action = np.asarray(policy.select_action(frame), np.float32)
            if policy is not None and human and not was_human:
                log.takeovers += 1
                log.human_spans.append((step, step))
                if log.first_takeover_step is None:
                    log.first_takeover_step = step
                if grip is not None and last_executed is not None:
                    gripper_closed = bool(last_executed[grip.index] > 0.5 * (grip.closed + grip.open))
            if grip is not None and grip.button in pressed:
                gripper_closed = not gripper_closed
            human_action = self.mapping.command(state, gripper_closed, self.dim)
            executed = human_action if human or policy_action is None else policy_action
            if not np.all(np.isfinite(executed)):
                raise RobostackError(
                    f"non-finite action at episode {run_index} step {step}: refusing to execute it"
                )
            if pending is not None:
                self.writer.add_step(pending)
            row: dict[str, Any] = dict(frame)
            row["sim_state"] = self.task.get_sim_state()
            row["action"] = executed
            row["human_action"] = human_action
            row["is_intervention"] = np.bool_(human and policy is not None)
            if human:
                log.human_steps += 1
                if log.human_spans:
                    log.human_spans[-1] = (log.human_spans[-1][0], step + 1)
            t_exec = time.perf_counter()
            if human and (
                isinstance(self.device, ScriptDevice)
                and self.device.event_times
                and self.device.event_times[-1][:2] == (run_index, step)
            ):
                log.latencies_s.append(t_exec - self.device.event_times[-1][2])
            elif human and pressed:
                log.latencies_s.append(t_exec - t_poll)
            if human and policy is not None and log.human_spans and log.human_spans[-1][0] == step:
                log.takeover_wall_times.append(time.time())
            obs, reward, terminated, truncated, info = self.task.step(executed)
            self._show_state()
            last_executed = executed
            if (
                policy is not None and human
            ):  # after the human's command went out: it never waits for inference
                policy_action = np.asarray(policy.select_action(frame), np.float32)
            if policy is not None:
                row["policy_action"] = policy_action
            truncated = bool(truncated or (step == self.spec.max_steps - 1 and not terminated))
            success = success or bool(info.get("success", terminated))
            row.update(
                reward=np.float32(reward),
                terminated=np.bool_(terminated),
                truncated=np.bool_(truncated),
                timestamp=np.float64(step / self.spec.control_rate_hz),
            )
            pending = row
            step += 1
            st.step, st.human, st.takeovers = step, human, log.takeovers
            self.control_rate.tick(time.perf_counter())
            if terminated or truncated:
                end = "success" if terminated else "time"
                break
            deadline = self._pace(deadline)
        log.steps = step
        self._in_episode = False
        self.totals["control_steps"] += step
        self.totals["episode_seconds"] += time.perf_counter() - t_start
        log.frames = self.totals["frames"] - frames_before
        log.task_success = success
        log.success = success if log.override is None else log.override
        if end in ("discard", "quit") or pending is None:
            self.writer.discard_episode()
            st.recording = "discarded"
            return log
        if end == "next":
            pending["truncated"] = np.bool_(not bool(pending["terminated"]))
        self.writer.add_step(pending)
        log.store_index = self.writer.end_episode(
            success=log.success,
            source="intervention" if policy is not None else "teleop",
            task=cfg.task,
            seed=seed,
            quality="human",
        )
        log.committed = True
        st.committed += 1
        st.successes += int(log.success)
        if log.override is not None:
            overrides = list(self.writer.group.attrs.get("operator_overrides", []))
            overrides.append(
                {
                    "episode": log.store_index,
                    "task_success": log.task_success,
                    "operator_success": log.override,
                }
            )
            self.writer.update_attrs(operator_overrides=overrides)
        return log


def session_rates(totals: dict[str, float]) -> dict[str, float]:
    """Control steps and drawn frames per second over the time episodes ran (waits between episodes excluded)."""
    t = max(totals["episode_seconds"], 1e-9)
    return {"control_hz": totals["control_steps"] / t, "display_fps": totals["frames"] / t}


def session_json(cfg: TeleopConfig, logs: list[EpisodeLog], totals: dict[str, float]) -> dict[str, Any]:
    return {
        "config": asdict(cfg),
        "totals": totals,
        "rates": session_rates(totals),
        "episodes": [asdict(e) for e in logs],
    }
