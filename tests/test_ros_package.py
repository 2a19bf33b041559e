"""The ament package in ros_ws/: a real colcon build, and every parameter its launch/YAML files name is declared."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import rclpy  # noqa: F401 -- a named dependency: missing, the suite fails instead of skipping
import yaml

from conftest import REPO

PKG = REPO / "ros_ws" / "src" / "robostack_ros"


def declared(node_exec: str) -> set[str]:
    if node_exec == "policy_node":
        from robostack.ros.policy_node import PARAMS

        return set(PARAMS)
    if node_exec in ("sim_robot_node", "teleop_mux_node", "recorder_node", "teleop_input_node"):
        import importlib

        return set(importlib.import_module(f"robostack.ros.{node_exec}").PARAMS)
    raise AssertionError(f"unknown node executable {node_exec}")


def test_colcon_build(tmp_path):
    colcon = Path(sys.executable).parent / "colcon"
    ws = tmp_path / "ws"
    shutil.copytree(PKG.parent, ws / "src")
    proc = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"], cwd=ws, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inst = ws / "install" / "robostack_ros"
    for exe in ("policy_node", "sim_robot_node", "teleop_mux_node", "recorder_node", "teleop_input_node"):
        assert (inst / "lib" / "robostack_ros" / exe).is_file()
    for f in (
        "launch/robot.launch.xml",
        "config/policy_node.yaml",
        "config/push_topic_map.yaml",
        "package.xml",
    ):
        assert (inst / "share" / "robostack_ros" / f).is_file(), f


def test_every_launch_and_yaml_parameter_is_declared():
    checked = 0
    for launch in sorted((PKG / "launch").glob("*.launch.xml")):
        for node in ET.parse(launch).getroot().iter("node"):
            if (
                node.get("pkg") == "joy"
            ):  # the standard joystick driver, started only with with_joy_driver:=true
                assert node.get("if") == "$(var with_joy_driver)" and not list(node.iter("param"))
                continue
            assert node.get("pkg") == "robostack_ros"
            names = {p.get("name") for p in node.iter("param") if p.get("name")}
            assert names <= declared(node.get("exec")), (launch.name, names - declared(node.get("exec")))
            checked += len(names)
    for cfg in sorted((PKG / "config").glob("*.yaml")):
        data = yaml.safe_load(cfg.read_text())
        for node_name, body in data.items():
            if isinstance(body, dict) and "ros__parameters" in body:
                keys = set(body["ros__parameters"])
                assert keys <= declared(node_name), (cfg.name, keys - declared(node_name))
                checked += len(keys)
    assert checked >= 8


def test_shipped_topic_map_fits_the_push_task():
    from robostack.policies import PolicySpec
    from robostack.ros.topic_map import TopicMap
    from robostack.sim.registry import task_spec

    t = task_spec("push")
    spec = PolicySpec(
        {f"obs/{k}": v for k, v in t.obs.items()}, t.action, [-1.0] * 2, [1.0] * 2, t.control_rate_hz
    )
    assert TopicMap.load(PKG / "config" / "push_topic_map.yaml").check_against(spec) == []
