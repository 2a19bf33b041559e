"""What stands between a policy's output and a robot: pure Python, so it is unit-tested without ROS.

- ``StaleWatchdog``: every required observation must be younger than ``max_age_s`` (by its own stamp where it has
  one); otherwise hold, and resume only once every stream is fresh again.
- ``resolve_hold`` / ``HoldCommand``: what "hold" publishes on each command interface (zeros, last position).
- ``ActionGuard``: refuse NaN/Inf, clip to the action bounds and to a maximum change per control step.
- ``EStopLatch``: once triggered, stays triggered until explicitly reset (never by the trigger going false).
- ``OnceLogger``: each kind of reaction is logged once when it starts and once when it clears, not every period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np


class StaleWatchdog:
    """Ages every required stream by the time its data was taken.

    A stamped message (JointState, PoseStamped, Image) is fed its ``header.stamp``: a driver that keeps
    republishing an old reading stays old. Its clock may differ from ours by up to ``clock_skew_s``, which is
    allowed on both sides (a little older, a little in the future); a stamp further in the future is refused as
    stale, since its age cannot be known. Unstamped messages are fed their arrival time, with no tolerance.
    """

    def __init__(self, required: Iterable[str], max_age_s: float, clock_skew_s: float = 0.0) -> None:
        self.required = list(required)
        self.max_age_s = max_age_s
        self.clock_skew_s = clock_skew_s
        self._stamp: dict[str, tuple[float, float]] = {}

    def feed(self, key: str, t: float, stamped: bool = False) -> None:
        """``t``: the data's own stamp when ``stamped``, else its arrival time (both on the checking clock)."""
        self._stamp[key] = (t, self.clock_skew_s if stamped else 0.0)

    def reset(self) -> None:
        """Forget every stamp: everything counts as stale until fed again."""
        self._stamp.clear()

    def stale(self, now: float) -> list[str]:
        """Required streams never seen, older than ``max_age_s`` or stamped in the future at ``now`` (empty: all
        fresh)."""
        out = []
        for k in self.required:
            t, tol = self._stamp.get(k, (-np.inf, 0.0))
            age = now - t
            if age > self.max_age_s + tol or age < -tol:
                out.append(k)
        return out

    def ages(self, now: float) -> dict[str, float]:
        return {k: now - self._stamp[k][0] for k in self.required if k in self._stamp}


HOLD_MODES = ("zero", "last_position", "silent")
COMMAND_INTERFACES = ("velocity", "effort", "position")


def resolve_hold(hold: str, interface: str) -> str:
    """The hold command for a command interface: ``auto`` picks the one that stops the robot.

    A ros2_control forward command controller keeps applying the last command it received, so "publish nothing"
    keeps a velocity- or effort-controlled joint moving: those hold with zeros, published every period. A
    position interface holds where it was last sent. ``silent`` is only for controllers with their own timeout.
    Combinations that would move the robot (zeros to a position interface, a repeated velocity) are refused.
    """
    if interface not in COMMAND_INTERFACES:
        raise ValueError(f"command interface '{interface}' (choose from {', '.join(COMMAND_INTERFACES)})")
    if hold == "auto":
        return "last_position" if interface == "position" else "zero"
    if hold not in HOLD_MODES:
        raise ValueError(f"hold '{hold}' (choose from auto, {', '.join(HOLD_MODES)})")
    if hold == "zero" and interface == "position":
        raise ValueError(
            "hold 'zero' on a position interface would drive every joint to 0; use last_position"
        )
    if hold == "last_position" and interface != "position":
        raise ValueError(
            f"hold 'last_position' on a {interface} interface would keep the robot moving; use zero"
        )
    return hold


class HoldCommand:
    """What to command while holding: zeros, the last commanded positions, or nothing (None)."""

    def __init__(self, mode: str, dim: int) -> None:
        self.mode = mode
        self.dim = dim
        self.last: np.ndarray | None = None

    def commanded(self, action: np.ndarray) -> None:
        self.last = np.asarray(action, np.float64).copy()

    def command(self) -> np.ndarray | None:
        if self.mode == "zero":
            return np.zeros(self.dim)
        if self.mode == "last_position":
            return None if self.last is None else self.last  # nothing sent yet: the robot is where it started
        return None


@dataclass
class GuardResult:
    action: np.ndarray | None
    """The action to command, or None when the output was refused (hold)."""
    clipped: bool = False
    rate_limited: bool = False
    refused: str = ""


class ActionGuard:
    def __init__(
        self, low: np.ndarray, high: np.ndarray, max_delta: float | np.ndarray | None = None
    ) -> None:
        self.low = np.asarray(low, np.float64)
        self.high = np.asarray(high, np.float64)
        self.max_delta = (
            None if max_delta is None else np.broadcast_to(np.asarray(max_delta, float), self.low.shape)
        )
        self.last: np.ndarray | None = None

    def reset(self, last: np.ndarray | None = None) -> None:
        self.last = None if last is None else np.asarray(last, np.float64)

    def __call__(self, action: np.ndarray) -> GuardResult:
        a = np.asarray(action, np.float64)
        if a.shape != self.low.shape:
            return GuardResult(None, refused=f"action shape {a.shape}, expected {self.low.shape}")
        if not np.isfinite(a).all():
            return GuardResult(None, refused="policy output holds NaN/Inf")
        out = np.clip(a, self.low, self.high)
        clipped = bool((out != a).any())
        limited = False
        if self.max_delta is not None and self.last is not None:
            lim = np.clip(out, self.last - self.max_delta, self.last + self.max_delta)
            limited = bool((lim != out).any())
            out = lim
        self.last = out
        return GuardResult(out, clipped, limited)


class EStopLatch:
    def __init__(self) -> None:
        self.engaged = False
        self.reason = ""

    def trigger(self, reason: str) -> bool:
        """Engage; True if this call engaged it (it was clear)."""
        first = not self.engaged
        self.engaged = True
        self.reason = self.reason or reason
        return first

    def reset(self) -> bool:
        was = self.engaged
        self.engaged, self.reason = False, ""
        return was


class OnceLogger:
    """Log a condition when it becomes true and when it clears; silent while it persists."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.active: dict[str, str] = {}

    def set(self, key: str, active: bool, message: str = "", cleared: str = "") -> None:
        if active and key not in self.active:
            self.active[key] = message
            self.log(message)
        elif not active and key in self.active:
            del self.active[key]
            if cleared:
                self.log(cleared)
