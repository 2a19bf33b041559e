"""Where an artifact came from: command line, code version, time -- saved next to every artifact."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from pathlib import Path

import robostack


def code_version() -> str:
    """robostack version plus the git commit (and '-dirty') when running from a checkout."""
    root = Path(robostack.__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{robostack.__version__}+{rev}" if rev else robostack.__version__


def provenance(config: dict | None = None) -> dict:
    return {
        "command": " ".join(["robostack", *sys.argv[1:]]) if sys.argv else "",
        "code_version": code_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "config": config or {},
    }
