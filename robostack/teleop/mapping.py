"""Teleop mapping files (``configs/teleop/<task>_<device>.yaml``): which device input drives which action element.

A device reports its state as named inputs: ``axes`` (name -> value in [-1, 1]) and held ``buttons`` (names). Names
are per device kind:

- keyboard: buttons are pygame key names (``t``, ``space``, ``left``, ``right``, ``up``, ``down``, ``escape``, ...);
  keyboards have no axes: an action element is driven by a key pair instead (``keys: [positive, negative]``);
- gamepad: ``axis0``, ``axis1``, ... and ``button0``, ``button1``, ... (SDL joystick indices, as ``joy`` reports them);
- spacemouse: axes ``x``, ``y``, ``z``, ``roll``, ``pitch``, ``yaw`` and buttons ``button0``, ``button1``.

File layout::

    task: push                       # the task the mapping is for (checked against --task)
    device: keyboard                 # keyboard | gamepad | spacemouse
    action:                          # one entry per driven action element (others stay 0)
      - {index: 0, keys: [right, left], scale: 1.0}      # keyboard: +scale while the first key is held, -scale for the second
      - {index: 1, axis: axis1, scale: -1.0, deadzone: 0.1}  # gamepad/spacemouse: scale * axis outside the dead zone
    gripper: {index: 6, button: space, closed: 1.0, open: -1.0}   # optional: a press toggles between the two values
    controls:                        # press (not hold) except takeover in hold mode
      takeover: t                    # held: the human drives (dead-man switch); --takeover toggle: a press switches
      next: n                        # end the episode now (commit) / start the next one
      discard: backspace             # drop the open episode (never committed)
      success: "1"                   # mark the open episode successful (overrides the task's check)
      failure: "0"                   # mark it failed
      pause: p
      quit: escape                   # stop; the open episode is discarded, committed ones stay

Dead zone: ``|v| <= deadzone`` reads 0, values outside are rescaled so the command still reaches ``scale`` at full
deflection. The command is clipped to the task's action range [-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robostack.config import load_yaml
from robostack.errors import RobostackError

DEVICES = ("keyboard", "gamepad", "spacemouse")
CONTROLS = ("takeover", "next", "discard", "success", "failure", "pause", "quit")
SPACEMOUSE_AXES = ("x", "y", "z", "roll", "pitch", "yaw")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "teleop"


@dataclass(frozen=True)
class AxisBinding:
    index: int
    scale: float = 1.0
    axis: str | None = None
    keys: tuple[str, str] | None = None
    deadzone: float = 0.0


@dataclass(frozen=True)
class GripperBinding:
    index: int
    button: str
    closed: float = 1.0
    open: float = -1.0


@dataclass
class DeviceState:
    """What a device reports at one poll: axis values and the buttons held."""

    axes: dict[str, float] = field(default_factory=dict)
    buttons: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TeleopMapping:
    task: str
    device: str
    action: tuple[AxisBinding, ...]
    controls: dict[str, str]
    gripper: GripperBinding | None = None
    path: str = ""

    @property
    def inputs(self) -> set[str]:
        """Every input name the mapping reads (axes, key pairs, buttons)."""
        out = {b.axis for b in self.action if b.axis} | {k for b in self.action for k in (b.keys or ())}
        out |= set(self.controls.values())
        if self.gripper:
            out.add(self.gripper.button)
        return out

    def missing_gamepad_inputs(self, n_axes: int, n_buttons: int) -> list[str]:
        """``axisN`` / ``buttonN`` names this (gamepad) mapping uses that a pad with these counts does not have."""
        out = []
        for name in sorted(self.inputs):
            kind, n, have = (
                ("axes", name[4:], n_axes) if name.startswith("axis") else ("buttons", name[6:], n_buttons)
            )
            if int(n) >= have:
                out.append(f"{name}: the pad has {have} {kind}")
        return out

    def command(self, state: DeviceState, gripper_closed: bool, action_dim: int) -> np.ndarray:
        """The action the device commands in ``state`` (elements no binding drives are 0)."""
        a = np.zeros(action_dim, np.float32)
        for b in self.action:
            if b.keys is not None:
                pos, neg = b.keys
                v = float(pos in state.buttons) - float(neg in state.buttons)
            else:
                raw = float(state.axes.get(b.axis or "", 0.0))
                mag = max(abs(raw) - b.deadzone, 0.0) / max(1.0 - b.deadzone, 1e-9)
                v = float(np.sign(raw)) * mag
            a[b.index] += b.scale * v
        if self.gripper is not None:
            a[self.gripper.index] = self.gripper.closed if gripper_closed else self.gripper.open
        return np.clip(a, -1.0, 1.0)


def _bad(path: str, msg: str) -> RobostackError:
    return RobostackError(f"{path}: {msg}")


def _check_input(path: str, device: str, name: Any, kind: str) -> str:
    name = str(name)
    if device == "keyboard":
        import warnings

        import pygame

        try:
            with warnings.catch_warnings():  # key names need no initialised display
                warnings.simplefilter("ignore")
                pygame.key.key_code(name)
        except ValueError:
            raise _bad(
                path, f"unknown key '{name}' (pygame key names: a, t, space, left, escape, ...)"
            ) from None
    elif device == "gamepad":
        prefix = "axis" if kind == "axis" else "button"
        if not (name.startswith(prefix) and name[len(prefix) :].isdigit()):
            raise _bad(
                path, f"gamepad {kind} '{name}' must be {prefix}N (N: the SDL index, as joy reports it)"
            )
    elif kind == "axis" and name not in SPACEMOUSE_AXES:
        raise _bad(path, f"spacemouse axis '{name}' must be one of {', '.join(SPACEMOUSE_AXES)}")
    elif kind == "button" and not (name.startswith("button") and name[6:].isdigit()):
        raise _bad(path, f"spacemouse button '{name}' must be buttonN")
    return name


def parse_mapping(raw: dict[str, Any], action_dim: int, path: str = "<mapping>") -> TeleopMapping:
    if not isinstance(raw, dict):
        raise _bad(path, "a mapping file is a YAML dictionary")
    unknown = set(raw) - {"task", "device", "action", "gripper", "controls", "description"}
    if unknown:
        raise _bad(
            path,
            f"unknown key(s) {', '.join(sorted(unknown))} (allowed: task, device, action, gripper, controls)",
        )
    device = raw.get("device")
    if device not in DEVICES:
        raise _bad(path, f"device must be one of {', '.join(DEVICES)}, got '{device}'")
    entries = raw.get("action") or []
    if not isinstance(entries, list) or not entries:
        raise _bad(path, "'action' must list at least one {index, axis|keys, scale} entry")
    bindings = []
    for e in entries:
        if not isinstance(e, dict) or set(e) - {"index", "axis", "keys", "scale", "deadzone"}:
            raise _bad(path, f"action entry {e} may only have index, axis or keys, scale, deadzone")
        idx = e.get("index")
        if not isinstance(idx, int) or not 0 <= idx < action_dim:
            raise _bad(path, f"action index {idx} out of range: the task's action has {action_dim} elements")
        if ("axis" in e) == ("keys" in e):
            raise _bad(path, f"action entry for index {idx} needs exactly one of 'axis' or 'keys'")
        keys = None
        if "keys" in e:
            if device != "keyboard" or not isinstance(e["keys"], list) or len(e["keys"]) != 2:
                raise _bad(path, f"'keys' (index {idx}) is a [positive, negative] key pair, keyboard only")
            keys = tuple(_check_input(path, device, k, "button") for k in e["keys"])
        elif device == "keyboard":
            raise _bad(path, f"a keyboard has no axes: drive index {idx} with keys: [positive, negative]")
        dz = float(e.get("deadzone", 0.0))
        if not 0.0 <= dz < 1.0:
            raise _bad(path, f"deadzone of index {idx} must be in [0, 1), got {dz}")
        bindings.append(
            AxisBinding(
                index=idx,
                scale=float(e.get("scale", 1.0)),
                axis=_check_input(path, device, e["axis"], "axis") if "axis" in e else None,
                keys=keys,  # type: ignore[arg-type]
                deadzone=dz,
            )
        )
    controls = raw.get("controls") or {}
    if not isinstance(controls, dict) or set(controls) - set(CONTROLS):
        raise _bad(
            path,
            f"unknown control(s) {', '.join(sorted(set(controls) - set(CONTROLS)))} (allowed: {', '.join(CONTROLS)})",
        )
    if "takeover" not in controls:
        raise _bad(path, "controls.takeover is required (the dead-man button)")
    controls = {k: _check_input(path, device, v, "button") for k, v in controls.items()}
    gripper = None
    if raw.get("gripper") is not None:
        g = raw["gripper"]
        if not isinstance(g, dict) or "index" not in g or "button" not in g:
            raise _bad(path, "gripper needs index and button")
        if not 0 <= int(g["index"]) < action_dim:
            raise _bad(
                path, f"gripper index {g['index']} out of range: the task's action has {action_dim} elements"
            )
        gripper = GripperBinding(
            int(g["index"]),
            _check_input(path, device, g["button"], "button"),
            float(g.get("closed", 1.0)),
            float(g.get("open", -1.0)),
        )
    used = [b.index for b in bindings] + ([gripper.index] if gripper else [])
    if len(set(used)) != len(used):
        raise _bad(path, f"an action index is bound twice ({sorted(used)})")
    return TeleopMapping(str(raw.get("task", "")), device, tuple(bindings), controls, gripper, path)


def default_mapping_path(task: str, device: str) -> Path:
    return CONFIG_DIR / f"{task}_{device}.yaml"


def load_mapping(
    path: str | os.PathLike[str] | None, task: str, device: str, action_dim: int
) -> TeleopMapping:
    """The mapping file given, else ``configs/teleop/<task>_<device>.yaml``; checked against the task."""
    p = Path(path) if path else default_mapping_path(task, device)
    if not p.is_file():
        raise RobostackError(
            f"{p}: no such mapping file"
            + ("" if path else f" (no default mapping for {task} with a {device}; pass --mapping)")
        )
    m = parse_mapping(load_yaml(p), action_dim, str(p))
    if m.task and m.task != task:
        raise RobostackError(f"{p}: mapping is for task '{m.task}', not '{task}'")
    if m.device != device:
        raise RobostackError(f"{p}: mapping is for a {m.device}, not a {device}")
    return m
