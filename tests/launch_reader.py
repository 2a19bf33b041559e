"""Start the nodes a ROS 2 XML launch file declares, as separate processes, without ros2launch (not on PyPI).

Understands what robostack's launch files use: <arg name default>, $(var NAME), $(find-pkg-share robostack_ros),
<node pkg exec name [if]> with <param name value>, <param from=FILE> and <remap from to>. Anything else in a launch
file is an error here, so the files cannot grow features this reader silently ignores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

PKG_SHARE = {"robostack_ros": Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "robostack_ros"}
MODULES = {
    n: f"robostack.ros.{n}"
    for n in ("policy_node", "sim_robot_node", "teleop_mux_node", "recorder_node", "teleop_input_node")
}


@dataclass
class NodeDecl:
    pkg: str
    exec: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    param_files: list[str] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", MODULES[self.exec], "--ros-args", "-r", f"__node:={self.name}"]
        for f in self.param_files:
            cmd += ["--params-file", f]
        for k, v in self.params.items():
            cmd += ["-p", f"{k}:={v}"]
        for a, b in self.remaps:
            cmd += ["-r", f"{a}:={b}"]
        return cmd


def read_launch(path: Path, args: dict[str, str]) -> list[NodeDecl]:
    root = ET.parse(path).getroot()
    values: dict[str, str] = {}

    def sub(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            kind, name = m.group(1), m.group(2)
            if kind == "var":
                return values[name]
            if kind == "find-pkg-share":
                return str(PKG_SHARE[name])
            raise ValueError(f"{path.name}: unsupported substitution $({kind} ...)")

        return re.sub(r"\$\(([\w-]+) ([^)]+)\)", one, text)

    nodes = []
    for el in root:
        if el.tag == "arg":
            name = el.get("name")
            if name in args:
                values[name] = args[name]
            elif el.get("default") is not None:
                values[name] = sub(el.get("default"))
            else:
                raise ValueError(f"{path.name}: launch argument '{name}' is required")
        elif el.tag == "node":
            cond = sub(el.get("if", "true")).lower()
            if cond not in ("true", "false", "1", "0"):
                raise ValueError(f"{path.name}: if='{cond}' is not a boolean")
            if cond in ("false", "0"):
                continue
            node = NodeDecl(el.get("pkg"), el.get("exec"), el.get("name"))
            for child in el:
                if child.tag == "param" and child.get("from"):
                    node.param_files.append(sub(child.get("from")))
                elif child.tag == "param":
                    node.params[child.get("name")] = sub(child.get("value"))
                elif child.tag == "remap":
                    node.remaps.append((sub(child.get("from")), sub(child.get("to"))))
                else:
                    raise ValueError(f"{path.name}: unsupported <{child.tag}> in <node>")
            nodes.append(node)
        else:
            raise ValueError(f"{path.name}: unsupported <{el.tag}>")
    return nodes


def start(
    nodes: list[NodeDecl], extra_params: dict[str, dict[str, str]] | None = None
) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    for n in nodes:
        cmd = n.command()
        for k, v in (extra_params or {}).get(n.name, {}).items():
            cmd += ["-p", f"{k}:={v}"]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        )
    return procs
