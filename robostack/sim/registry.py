"""Tasks registered by name; heavy simulators (robosuite) are imported only when their task is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robostack.errors import RobostackError
from robostack.sim.base import SimTask, TaskSpec

_FACTORIES: dict[str, Callable[..., SimTask]] = {}
_SPECS: dict[str, Callable[[], TaskSpec]] = {}


def register(
    name: str, spec: Callable[[], TaskSpec]
) -> Callable[[Callable[..., SimTask]], Callable[..., SimTask]]:
    def deco(factory: Callable[..., SimTask]) -> Callable[..., SimTask]:
        _FACTORIES[name] = factory
        _SPECS[name] = spec
        return factory

    return deco


def task_names() -> list[str]:
    return list(_FACTORIES)


def _check(name: str) -> None:
    if name not in _FACTORIES:
        raise RobostackError(f"unknown task '{name}' (choose from {', '.join(_FACTORIES)})")


def make_task(name: str, **kwargs: Any) -> SimTask:
    _check(name)
    return _FACTORIES[name](**kwargs)


def task_spec(name: str) -> TaskSpec:
    _check(name)
    return _SPECS[name]()


def _push_spec() -> TaskSpec:
    from robostack.sim.push import SPEC

    return SPEC


def _rs_spec(name: str) -> Callable[[], TaskSpec]:
    def f() -> TaskSpec:
        from robostack.sim.robosuite_tasks import SPECS

        return SPECS[name][1]

    return f


@register("push", _push_spec)
def _make_push(**kwargs: Any) -> SimTask:
    from robostack.sim.push import PushTask

    kwargs.pop("cameras", None)  # push renders its top camera on demand
    kwargs.pop("image_size", None)
    return PushTask(**kwargs)


@register("lift", _rs_spec("lift"))
def _make_lift(**kwargs: Any) -> SimTask:
    from robostack.sim.robosuite_tasks import RobosuiteTask

    return RobosuiteTask("lift", **kwargs)


@register("can", _rs_spec("can"))
def _make_can(**kwargs: Any) -> SimTask:
    from robostack.sim.robosuite_tasks import RobosuiteTask

    return RobosuiteTask("can", **kwargs)
