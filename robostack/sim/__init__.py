"""Simulated tasks (native MuJoCo ``push``; robosuite ``lift`` and ``can``), scripted experts and demo generation."""

from robostack.sim.registry import make_task, task_names, task_spec

__all__ = ["make_task", "task_names", "task_spec"]
