"""Entry points of the robostack ROS 2 nodes; the implementations live in ``robostack.ros``."""
