"""``ros2 run robostack_ros recorder_node``: see ``robostack.ros.recorder_node``."""

from robostack.ros.recorder_node import main

__all__ = ["main"]
