"""Command-line options generated from a typed config, so each setting (name, type, default, help) is written once:
in the dataclass. ``--a-b`` sets field ``a_b``; a bool that defaults to True becomes ``--no-a-b``."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    for f in dataclasses.fields(cls):
        flag = f.name.replace("_", "-")
        help_text = f.metadata.get("help")
        if f.type in (bool, "bool"):
            if f.default:
                parser.add_argument(f"--no-{flag}", dest=f.name, action="store_false", help=help_text)
            else:
                parser.add_argument(f"--{flag}", dest=f.name, action="store_true", help=help_text)
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
        choices = f.metadata.get("choices")
        parser.add_argument(
            f"--{flag}", dest=f.name, type=kind, default=f.default, choices=choices, help=help_text
        )


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**values)
