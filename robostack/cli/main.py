"""``robostack`` command line: one parser, one place that turns errors into a single line and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from robostack.errors import RobostackError

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; keep it to one line
        self.exit(EXIT_USAGE, f"robostack: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from robostack.cli import (
        bench_cmd,
        compose_cmd,
        data_cmd,
        export_cmd,
        finetune_cmd,
        generate_cmd,
        quickstart,
        sim_cmd,
        teleop_cmd,
        train_cmd,
    )

    p = _Parser(prog="robostack", description="Robot policy training and deployment stack.")
    p.add_argument("--version", action="version", version=f"robostack {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    data_cmd.add(sub)
    sim_cmd.add(sub)
    train_cmd.add(sub)
    finetune_cmd.add(sub)
    generate_cmd.add(sub)
    compose_cmd.add(sub)
    export_cmd.add(sub)
    bench_cmd.add(sub)
    teleop_cmd.add(sub)
    quickstart.add(sub)
    return p


def _version() -> str:
    from robostack import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        bad = [a for a in extra if not (a.startswith("--") and "=" in a)]
        if bad or not getattr(args, "accepts_overrides", False):
            parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
        args.overrides = extra
    try:
        return int(args.func(args) or 0)
    except RobostackError as exc:
        print(f"robostack: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("robostack: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, traceback on request
        if os.environ.get("ROBOSTACK_DEBUG"):
            raise
        print(
            f"robostack: internal error: {type(exc).__name__}: {exc} (set ROBOSTACK_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
