"""The one ``main`` every robostack node runs: init, build the node, spin until shutdown, clean up.

Bad configuration found while building the node is one line on stderr and exit code 1; a shutdown signal that
arrives mid-callback (it invalidates the context) ends the node quietly."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
import rclpy.executors
from rclpy.node import Node

from robostack.errors import RobostackError


def run_node(make: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = make()
    except RobostackError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
