"""What every simulated task provides: a gymnasium env with a declared spec, sim-state access and an expert."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from robostack.data.schema import FeatureSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "sim" / "assets"


@dataclass(frozen=True)
class TaskSpec:
    """Everything a consumer needs to know about a task without stepping it."""

    name: str
    description: str
    control_rate_hz: float
    max_steps: int
    obs: dict[str, FeatureSpec]
    action: FeatureSpec
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    robot: str
    cameras: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "control_rate_hz": self.control_rate_hz,
            "max_steps": self.max_steps,
            "obs": {k: v.to_json() for k, v in self.obs.items()},
            "action": self.action.to_json(),
            "action_low": list(self.action_low),
            "action_high": list(self.action_high),
            "robot": self.robot,
            "cameras": list(self.cameras),
        }


STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def get_physics_state(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """MuJoCo's full integration state: time, qpos, qvel, act, ctrl, applied forces, mocap and the solver's
    warm-start. Without the warm-start a replay drifts (~5 mm in robosuite Lift); with it, replay is exact."""
    state = np.empty(mujoco.mj_stateSize(model, STATE_SPEC), np.float64)
    mujoco.mj_getState(model, data, state, STATE_SPEC)
    return state


def set_physics_state(model: mujoco.MjModel, data: mujoco.MjData, state: np.ndarray) -> None:
    state = np.asarray(state, np.float64)
    size = mujoco.mj_stateSize(model, STATE_SPEC)
    if state.shape != (size,):
        raise ValueError(f"physics state has {state.shape} values, this model needs ({size},)")
    mujoco.mj_setState(model, data, state, STATE_SPEC)
    mujoco.mj_forward(model, data)


class SimTask(gym.Env, ABC):
    """A seeded, deterministic task. ``reset(seed=s)`` twice gives the same episode, bit for bit."""

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012
    spec_: TaskSpec

    @property
    def task_spec(self) -> TaskSpec:
        return self.spec_

    @abstractmethod
    def get_sim_state(self) -> np.ndarray:
        """Full physics state as a flat float64 vector (enough to reproduce the future exactly)."""

    @abstractmethod
    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a state from ``get_sim_state`` (observations are recomputed from it)."""

    @abstractmethod
    def observe(self) -> dict[str, np.ndarray]:
        """Current observation dict with the spec's keys (without the ``obs/`` prefix)."""

    @abstractmethod
    def is_success(self) -> bool: ...

    @abstractmethod
    def make_expert(self, rng: np.random.Generator) -> Expert:
        """A scripted expert for the episode just reset; ``rng`` drives its choices (e.g. which way around)."""

    def render_frame(self, camera: str | None = None, width: int = 640, height: int = 480) -> np.ndarray:
        raise NotImplementedError(f"task {self.spec_.name} cannot render")

    def view_source(self) -> tuple[mujoco.MjModel, np.ndarray, str]:
        """(MuJoCo model, its physics state now, the viewer's camera): what ``sim.viewer.ViewThread`` renders."""
        raise NotImplementedError(f"task {self.spec_.name} has no viewer")

    def sim_state_size(self) -> int:
        return int(self.get_sim_state().shape[0])


class Expert(ABC):
    """A scripted policy for one episode."""

    @abstractmethod
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...

    def act_labelled(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(command to execute, action to record as the label); the same array unless labels are corrected."""
        a = self.act(obs)
        return a, a
