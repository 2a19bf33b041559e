"""``ros2 run robostack_ros sim_robot_node``: see ``robostack.ros.sim_robot_node``."""

from robostack.ros.sim_robot_node import main

__all__ = ["main"]
