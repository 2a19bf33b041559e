"""Policy families, registered by decorator: the one place ``robostack train``, the CLI's choices, the exporter, both
runtimes and the bench runner learn which families exist.

A family is a module in ``robostack/policies/families/`` (every module there is imported on first use), or, for a
family that lives in another package, a module named by that package's ``robostack.policies`` entry point. Its
``Policy`` subclass carries ``@register_policy("name", ConfigClass)``; an unknown name lists the valid choices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robostack.errors import RobostackError
from robostack.utils.plugins import import_plugins

ENTRY_POINT_GROUP = "robostack.policies"
_FAMILIES: dict[str, tuple[type, type]] = {}
_discovered = False


def register_policy(name: str, config_cls: type) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        known = _FAMILIES.get(name)
        if known is not None and known[0].__qualname__ != cls.__qualname__:
            raise RobostackError(
                f"policy family '{name}' is registered twice ({known[0].__module__}, {cls.__module__})"
            )
        _FAMILIES[name] = (cls, config_cls)
        cls.family = name
        return cls

    return deco


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        import_plugins("robostack.policies.families", ENTRY_POINT_GROUP)


def policy_names(trainable_only: bool = False) -> list[str]:
    """Registered families; ``trainable_only`` leaves out those built from other policies (e.g. ``composed``)."""
    _discover()
    return sorted(n for n, (cls, _) in _FAMILIES.items() if not trainable_only or cls.trainable)


def policy_classes(name: str) -> tuple[type, type]:
    """(policy class, config class) of a registered family."""
    _discover()
    if name not in _FAMILIES:
        raise RobostackError(f"unknown policy '{name}' (choose from {', '.join(policy_names())})")
    return _FAMILIES[name]


def make_config(name: str, **fields: Any) -> Any:
    _, config_cls = policy_classes(name)
    return config_cls(**fields)
