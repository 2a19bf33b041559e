"""ROS 2 deployment: the nodes behind ``ros_ws/src/robostack_ros`` (policy node with safety, ...).

The node code lives in the library so that it is installed (and tested) with robostack itself; the ament package
in ``ros_ws/`` carries the launch files, parameter files and the same entry points for ``colcon build``. Importing
this package needs rclpy (ROS 2 Jazzy, from PyPI wheels or a ROS install); ``safety`` and ``topic_map`` do not.
"""
