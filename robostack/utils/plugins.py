"""Finding registered plug-ins: every module of a built-in package, then the modules other packages name under an
entry point group. Importing a module runs its registration decorators."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from robostack.errors import RobostackError


def import_plugins(package: str, group: str, skip: tuple[str, ...] = ()) -> None:
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in skip:
            importlib.import_module(f"{package}.{mod.name}")
    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in names itself instead of breaking every command
            raise RobostackError(
                f"plug-in '{ep.name}' ({ep.value}) of {group} failed to load: {exc}"
            ) from None
