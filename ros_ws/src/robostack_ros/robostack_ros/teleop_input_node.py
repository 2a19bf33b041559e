"""``ros2 run robostack_ros teleop_input_node``: see ``robostack.ros.teleop_input_node``."""

from robostack.ros.teleop_input_node import main

__all__ = ["main"]
