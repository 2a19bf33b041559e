"""``ros2 run robostack_ros teleop_mux_node``: see ``robostack.ros.teleop_mux_node``."""

from robostack.ros.teleop_mux_node import main

__all__ = ["main"]
