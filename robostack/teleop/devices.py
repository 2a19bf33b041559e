"""Input devices of the teleop tool. Each reports a ``DeviceState`` (axes by name, buttons held) when polled once
per control step; the session turns it into commands and control events through the mapping.

- ``keyboard`` and ``gamepad`` read SDL2 through pygame (the keyboard needs the tool's window to have focus);
- ``spacemouse`` reads the 3Dconnexion device through pyspacemouse (hidapi);
- ``script:FILE`` replays a timed list of device events with no hardware and no window. It emulates the mapping's
  device (the same input names), so a script exercises exactly the code path of a real device.

Script file (YAML)::

    events:
      - {episode: 0, step: 10, press: [t]}             # buttons/keys held from step 10 of episode 0
      - {episode: 0, step: 10, axes: {axis0: 0.5}}      # axis values from then on
      - {episode: 0, step: 30, release: [t]}
      - {episode: 1, step: 5, press: [backspace]}       # a press is held until released (or for one step: tap)
      - {episode: 1, step: 6, tap: [n]}                 # held for this step only
    device: keyboard # the device the script stands in for (its mapping: --mapping, else the task's default)
    end: quit        # after the last event: 'quit' (default: stop once --episodes are done) or 'run'

``episode`` counts episodes as the tool runs them (a discarded episode counts too), ``step`` the control steps of
that episode. Every event's state change applies at the poll of that step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robostack.config import load_yaml
from robostack.errors import RobostackError
from robostack.teleop.mapping import DeviceState, TeleopMapping


class Device:
    kind = "device"
    needs_window = False

    def poll(self, episode: int, step: int) -> DeviceState:
        raise NotImplementedError

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------- script
@dataclass(frozen=True)
class ScriptEvent:
    episode: int
    step: int
    press: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    tap: tuple[str, ...] = ()
    axes: tuple[tuple[str, float], ...] = ()


class ScriptDevice(Device):
    kind = "script"

    def __init__(self, path: str | os.PathLike[str], mapping: TeleopMapping) -> None:
        self.path = str(path)
        raw = load_yaml(path)
        events = raw.get("events")
        if not isinstance(events, list):
            raise RobostackError(
                f"{path}: a device script needs 'events': a list of {{episode, step, press|release|tap|axes}}"
            )
        self.events: dict[tuple[int, int], list[ScriptEvent]] = {}
        known = mapping.inputs
        for e in events:
            if (
                not isinstance(e, dict)
                or "step" not in e
                or set(e) - {"episode", "step", "press", "release", "tap", "axes"}
            ):
                raise RobostackError(
                    f"{path}: bad event {e} (keys: episode, step, press, release, tap, axes)"
                )
            ev = ScriptEvent(
                int(e.get("episode", 0)),
                int(e["step"]),
                tuple(map(str, e.get("press", ()))),
                tuple(map(str, e.get("release", ()))),
                tuple(map(str, e.get("tap", ()))),
                tuple((str(k), float(v)) for k, v in (e.get("axes") or {}).items()),
            )
            names = set(ev.press) | set(ev.release) | set(ev.tap) | {k for k, _ in ev.axes}
            if names - known:
                raise RobostackError(
                    f"{path}: event at episode {ev.episode} step {ev.step} uses {', '.join(sorted(names - known))}, "
                    f"which the mapping {mapping.path} does not bind"
                )
            self.events.setdefault((ev.episode, ev.step), []).append(ev)
        self.last_episode = max((k[0] for k in self.events), default=0)
        self.end = str(raw.get("end", "quit"))
        if self.end not in ("quit", "run"):
            raise RobostackError(f"{path}: 'end' must be quit or run, got '{self.end}'")
        self.held: set[str] = set()
        self.axes: dict[str, float] = {}
        self.event_times: list[tuple[int, int, float]] = []
        """(episode, step, perf_counter) of every poll that applied events: the device-event side of latency."""

    def poll(self, episode: int, step: int) -> DeviceState:
        taps: set[str] = set()
        evs = self.events.get((episode, step), [])
        for ev in evs:
            self.held |= set(ev.press)
            self.held -= set(ev.release)
            taps |= set(ev.tap)
            self.axes.update(ev.axes)
        if evs:
            self.event_times.append((episode, step, time.perf_counter()))
        return DeviceState(dict(self.axes), frozenset(self.held | taps))

    def finished(self, episode: int) -> bool:
        """The script has no events left for ``episode`` or later and ends with 'quit'."""
        return self.end == "quit" and episode > self.last_episode


# --------------------------------------------------------------------------- SDL2 (pygame)
def init_pygame(video: bool) -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    # SDL's GL-accelerated window surface would share the thread's current GL context with MuJoCo's offscreen
    # renderer and present black frames: the window uses a software framebuffer.
    os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # no sound: SDL would probe ALSA and print errors
    import pygame

    headless = os.environ.get("SDL_VIDEODRIVER", "") in ("dummy", "offscreen")
    if video and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and not headless:
        raise RobostackError(
            "no display: the keyboard and the window need one (run under Xvfb: xvfb-run -a robostack teleop ..., "
            "or replay a device script with --device script:FILE)"
        )
    if video:
        pygame.display.init()
        pygame.font.init()
    pygame.joystick.init()
    return pygame


class KeyboardDevice(Device):
    """Keys held in the tool's window (KEYDOWN/KEYUP events, so a press shorter than a control period still counts
    for one poll)."""

    kind = "keyboard"
    needs_window = True

    def __init__(self) -> None:
        self.pg = init_pygame(video=True)
        self.held: set[str] = set()
        self.quit_requested = False

    def pump(self, events: Iterable[Any]) -> set[str]:
        """Apply window events; return keys pressed since the last poll (kept for one poll even if released)."""
        pg = self.pg
        tapped = set()
        for ev in events:
            if ev.type == pg.KEYDOWN:
                name = pg.key.name(ev.key)
                self.held.add(name)
                tapped.add(name)
            elif ev.type == pg.KEYUP:
                self.held.discard(pg.key.name(ev.key))
            elif ev.type == pg.QUIT:
                self.quit_requested = True
        return tapped

    def poll(self, episode: int, step: int) -> DeviceState:
        tapped = self.pump(self.pg.event.get())
        return DeviceState({}, frozenset(self.held | tapped))


class GamepadDevice(Device):
    """The first SDL joystick (pygame): axes ``axisN``, buttons ``buttonN``, hats ``hatN_x``/``hatN_y``."""

    kind = "gamepad"

    def __init__(self, index: int = 0) -> None:
        self.pg = init_pygame(video=False)
        self.pg.joystick.init()
        if self.pg.joystick.get_count() <= index:
            raise RobostackError(
                "no gamepad found (SDL sees none: is it plugged in and readable, /dev/input/js*?); "
                "use --device keyboard or --device script:FILE"
            )
        self.joy = self.pg.joystick.Joystick(index)
        self.joy.init()
        self.name = self.joy.get_name()

    def check(self, mapping: TeleopMapping) -> None:
        bad = mapping.missing_gamepad_inputs(self.joy.get_numaxes(), self.joy.get_numbuttons())
        if bad:
            raise RobostackError(f"{mapping.path}: {bad[0]} (gamepad '{self.name}')")

    def poll(self, episode: int, step: int) -> DeviceState:
        self.pg.event.pump()
        axes = {f"axis{i}": float(self.joy.get_axis(i)) for i in range(self.joy.get_numaxes())}
        held = frozenset(f"button{i}" for i in range(self.joy.get_numbuttons()) if self.joy.get_button(i))
        return DeviceState(axes, held)


class SpaceMouseDevice(Device):
    kind = "spacemouse"

    def __init__(self) -> None:
        try:
            import pyspacemouse
        except Exception as exc:  # easyhid needs the hidapi library: name it
            raise RobostackError(
                f"SpaceMouse support unavailable ({type(exc).__name__}: {exc}); install pyspacemouse and libhidapi"
            ) from None
        if not pyspacemouse.get_connected_devices():
            raise RobostackError(
                "no SpaceMouse found (hidapi sees none: is it plugged in and readable, /dev/hidraw*?); "
                "use --device keyboard or --device script:FILE"
            )
        self.dev = pyspacemouse.open()
        if not self.dev:
            raise RobostackError("the SpaceMouse could not be opened (permissions on /dev/hidraw*?)")

    def poll(self, episode: int, step: int) -> DeviceState:
        s = self.dev.read()
        axes = {k: float(getattr(s, k)) for k in ("x", "y", "z", "roll", "pitch", "yaw")}
        return DeviceState(axes, frozenset(f"button{i}" for i, b in enumerate(s.buttons) if b))

    def close(self) -> None:
        self.dev.close()


def open_device(spec: str, mapping: TeleopMapping) -> Device:
    """``keyboard`` | ``gamepad`` | ``spacemouse`` | ``script:FILE``."""
    if spec.startswith("script:"):
        path = Path(spec.removeprefix("script:"))
        if not path.is_file():
            raise RobostackError(f"{path}: no such device script")
        return ScriptDevice(path, mapping)
    if spec == "keyboard":
        return KeyboardDevice()
    if spec == "gamepad":
        dev = GamepadDevice()
        dev.check(mapping)
        return dev
    if spec == "spacemouse":
        return SpaceMouseDevice()
    raise RobostackError(f"unknown device '{spec}' (choose from keyboard, gamepad, spacemouse, script:FILE)")


def emulated_device(spec: str) -> str:
    """The device whose mapping applies: the device itself, or the one a script stands in for (default keyboard)."""
    if spec.startswith("script:"):
        path = Path(spec.removeprefix("script:"))
        if not path.is_file():
            raise RobostackError(f"{path}: no such device script")
        kind = str(load_yaml(path).get("device", "keyboard"))
    else:
        kind = spec
    if kind not in ("keyboard", "gamepad", "spacemouse"):
        raise RobostackError(
            f"unknown device '{kind}' (choose from keyboard, gamepad, spacemouse, script:FILE)"
        )
    return kind
