"""Simulated tasks (native MuJoCo ``push``; robosuite ``lift`` and ``can``), scripted experts and demo generation."""

import os

# MuJoCo picks its GL backend when first imported: headless machines (CI, robots' compute boxes) need EGL.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from robostack.sim.registry import make_task, task_names, task_spec

__all__ = ["make_task", "task_names", "task_spec"]
