"""Policy families registered by decorator; an unknown name lists the valid choices."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from robostack.errors import RobostackError

_POLICIES: dict[str, tuple[type, type]] = {}
_MODULES = {"diffusion": "robostack.policies.diffusion", "flow": "robostack.policies.flow",
            "gaussian": "robostack.policies.gaussian"}  # fmt: skip


def register_policy(name: str, config_cls: type) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        _POLICIES[name] = (cls, config_cls)
        return cls

    return deco


def policy_names() -> list[str]:
    return list(_MODULES)


def policy_classes(name: str) -> tuple[type, type]:
    """(policy class, config class) for a registered name; imports the family's module lazily."""
    if name not in _MODULES:
        raise RobostackError(f"unknown policy '{name}' (choose from {', '.join(_MODULES)})")
    if name not in _POLICIES:
        importlib.import_module(_MODULES[name])
    return _POLICIES[name]


def make_config(name: str, **fields: Any) -> Any:
    _, config_cls = policy_classes(name)
    return config_cls(**fields)
