"""``ros2 run robostack_ros policy_node``: see ``robostack.ros.policy_node``."""

from robostack.ros.policy_node import main

__all__ = ["main"]
