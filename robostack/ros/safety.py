"""What stands between a policy's output and a robot: pure Python, so it is unit-tested without ROS.

- ``StaleWatchdog``: every required observation must be younger than ``max_age_s``; otherwise stop commanding and
  hold, and resume only once every stream is fresh again.
- ``ActionGuard``: refuse NaN/Inf, clip to the action bounds and to a maximum change per control step.
- ``EStopLatch``: once triggered, stays triggered until explicitly reset (never by the trigger going false).
- ``OnceLogger``: each kind of reaction is logged once when it starts and once when it clears, not every period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np


class StaleWatchdog:
    def __init__(self, required: Iterable[str], max_age_s: float) -> None:
        self.required = list(required)
        self.max_age_s = max_age_s
        self._stamp: dict[str, float] = {}

    def feed(self, key: str, now: float) -> None:
        self._stamp[key] = now

    def reset(self) -> None:
        """Forget every stamp: everything counts as stale until fed again."""
        self._stamp.clear()

    def stale(self, now: float) -> list[str]:
        """Required streams never seen or older than ``max_age_s`` at ``now`` (empty: all fresh)."""
        return [k for k in self.required if now - self._stamp.get(k, -np.inf) > self.max_age_s]

    def ages(self, now: float) -> dict[str, float]:
        return {k: now - self._stamp[k] for k in self.required if k in self._stamp}


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
