"""Typed dataclass configs: build from YAML/dicts with locked keys, flat ``a.b=value`` overrides, save resolved.

Unknown keys raise (a typo never silently does nothing); override values are parsed as YAML scalars, so
``optim.lr=3e-4``, ``unet.down_dims=[64,128,256]`` and ``ema.enabled=false`` all work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from robostack.errors import RobostackError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dataclass_of(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp  # type: ignore[return-value]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for a in typing.get_args(tp):
            if dataclasses.is_dataclass(a):
                return a  # type: ignore[return-value]
    return None


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check (and convert where lossless) a scalar or list against its annotated type."""
    origin = typing.get_origin(tp)
    if isinstance(tp, types.UnionType) or origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except RobostackError:
                continue
        raise RobostackError(f"config key {name}: {value!r} does not fit {tp}")
    if tp is float:
        if isinstance(value, bool):
            raise RobostackError(f"config key {name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RobostackError(f"config key {name}: expected a number, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise RobostackError(f"config key {name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise RobostackError(f"config key {name}: expected an integer, got {value!r}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise RobostackError(f"config key {name}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RobostackError(f"config key {name}: expected text, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise RobostackError(f"config key {name}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{name}[{i}]") if item is not Any else v for i, v in enumerate(value)]
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build ``cls`` from a (nested) dict; unknown keys are errors that list the valid ones."""
    data = dict(data or {})
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise RobostackError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)} (valid: {', '.join(where + k for k in types_)})"
        )
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_of(types_[name])
        if sub is not None and isinstance(value, dict):
            kwargs[name] = from_dict(sub, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, types_[name], where + name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RobostackError(f"bad config for {where or cls.__name__}: {exc}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (copy)."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise RobostackError(f"override '{item}' is not of the form key.path=value")
        path, raw = item.split("=", 1)
        path = path.lstrip("-")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise RobostackError(f"override '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise RobostackError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RobostackError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RobostackError(f"{p}: expected a mapping at the top level")
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(
        yaml.safe_dump(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=False)
    )
