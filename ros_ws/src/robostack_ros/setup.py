"""ament_python package: launch files, parameter files and the node entry points (the node code ships in the
robostack library, which must be installed in the same Python environment)."""

from glob import glob

from setuptools import setup

PACKAGE = "robostack_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.xml")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robostack developers",
    description="robostack policy deployment on ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"policy_node = {PACKAGE}.policy_node:main",
            f"sim_robot_node = {PACKAGE}.sim_robot_node:main",
            f"teleop_mux_node = {PACKAGE}.teleop_mux_node:main",
            f"recorder_node = {PACKAGE}.recorder_node:main",
            f"teleop_input_node = {PACKAGE}.teleop_input_node:main",
        ]
    },
)
