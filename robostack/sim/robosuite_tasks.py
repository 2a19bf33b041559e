"""``lift`` and ``can`` from robosuite 1.5: Panda, OSC_POSE delta actions, low-dim object observations.

Observations: ``state`` = end-effector position (3), quaternion xyzw (4), gripper finger positions (2);
``object`` = robosuite's ``object-state``. Actions (7): position delta (x 5 cm), axis-angle delta (x 0.5 rad) in the
base frame, gripper (-1 open, +1 close). Cameras are optional (``camera=...``, offscreen EGL).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import warnings
import xml.etree.ElementTree as ET
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from scipy.spatial.transform import Rotation

from robostack.data.schema import FeatureSpec
from robostack.errors import RobostackError
from robostack.sim.base import Expert, SimTask, TaskSpec, get_physics_state, set_physics_state

CONTROL_HZ = 20.0
STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_qx", "eef_qy", "eef_qz", "eef_qw", "finger_l", "finger_r"]
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]


def _spec(name: str, env_name: str, object_dim: int, max_steps: int, description: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        description=description,
        control_rate_hz=CONTROL_HZ,
        max_steps=max_steps,
        obs={
            "state": FeatureSpec("float32", (9,), names=STATE_NAMES, units="m, quaternion xyzw, m"),
            "object": FeatureSpec("float32", (object_dim,), description=f"robosuite {env_name} object-state"),
        },
        action=FeatureSpec("float32", (7,), names=ACTION_NAMES, units="x0.05 m, x0.5 rad, gripper"),
        action_low=(-1.0,) * 7,
        action_high=(1.0,) * 7,
        robot="Panda (robosuite 1.5, OSC_POSE delta)",
        cameras=("agentview", "robot0_eye_in_hand"),
    )


SPECS = {
    "lift": (
        "Lift",
        _spec("lift", "Lift", 10, 200, "Lift the cube above the table (robosuite Lift, Panda)."),
    ),
    "can": (
        "PickPlaceCan",
        _spec(
            "can",
            "PickPlaceCan",
            14,
            400,
            "Pick the can and place it in its bin (robosuite PickPlaceCan, Panda).",
        ),
    ),
}


def _fast_render_xml(xml: str) -> str:
    """Turn off multisample anti-aliasing and mirror reflections in the scene the cameras see.

    On a machine without a GPU (EGL through llvmpipe) they are most of a frame's cost. Neither is something a real camera gives a policy to learn from."""
    root = ET.fromstring(xml)
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    quality = visual.find("quality")
    if quality is None:
        quality = ET.SubElement(visual, "quality")
    quality.set("offsamples", "0")
    for material in root.iter("material"):
        if "reflectance" in material.attrib:
            material.set("reflectance", "0")
    return ET.tostring(root, encoding="unicode")


def _make_env(env_name: str, max_steps: int, cameras: tuple[str, ...], image_size: int) -> Any:
    os.environ.setdefault("MUJOCO_GL", "egl")
    # robosuite warns about optional extras on import and about controller parts on every reset: keep the
    # console for what matters (its errors still reach stderr).
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        import robosuite
        from robosuite.controllers import load_composite_controller_config
        from robosuite.utils.log_utils import ROBOSUITE_DEFAULT_LOGGER

    ROBOSUITE_DEFAULT_LOGGER.setLevel(logging.ERROR)
    for h in ROBOSUITE_DEFAULT_LOGGER.handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setStream(sys.stderr)
    cfg = load_composite_controller_config(controller="BASIC", robot="Panda")
    cfg["body_parts"] = {"right": cfg["body_parts"]["right"]}  # one arm: no config for parts Panda lacks
    env = robosuite.make(
        env_name,
        robots="Panda",
        controller_configs=cfg,
        has_renderer=False,
        has_offscreen_renderer=bool(cameras),
        use_camera_obs=bool(cameras),
        camera_names=list(cameras) if cameras else "agentview",
        camera_heights=image_size,
        camera_widths=image_size,
        control_freq=CONTROL_HZ,
        horizon=max_steps,
        reward_shaping=False,
        ignore_done=True,
        # A soft reset leaves state behind (the cube's settled height moved ~2 mm with the previous episode), which
        # breaks "same seed, same episode"; a hard reset rebuilds the sim and costs ~0.3 s per episode.
        hard_reset=True,
        lite_physics=False,
    )
    if cameras:
        # Applied whenever the sim is rebuilt, i.e. from the first reset on (every reset is a hard one).
        env.set_xml_processor(_fast_render_xml)
    return env


class RobosuiteTask(SimTask):
    """A robosuite environment behind the SimTask contract (seeded reset, flat sim state, expert)."""

    def __init__(self, name: str, cameras: tuple[str, ...] = (), image_size: int = 84) -> None:
        if name not in SPECS:
            raise RobostackError(f"unknown robosuite task '{name}' (choose from {', '.join(SPECS)})")
        env_name, spec = SPECS[name]
        for cam in cameras:
            if cam not in spec.cameras:
                raise RobostackError(
                    f"task {name} has no camera '{cam}' (choose from {', '.join(spec.cameras)})"
                )
        obs = dict(spec.obs)
        for cam in cameras:
            obs[f"image_{cam}"] = FeatureSpec("uint8", (image_size, image_size, 3), units="RGB")
        self.spec_ = TaskSpec(**{**spec.__dict__, "obs": obs})
        self.cameras, self.image_size = tuple(cameras), image_size
        self.env = _make_env(env_name, spec.max_steps, self.cameras, image_size)
        self._raw: dict[str, np.ndarray] = {}
        self._seed: int | None = None
        self.observation_space = spaces.Dict(
            {
                k: spaces.Box(0, 255, v.shape, np.uint8)
                if v.dtype == "uint8"
                else spaces.Box(-np.inf, np.inf, v.shape)
                for k, v in obs.items()
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)

    # ------------------------------------------------------------------ state
    def _grippers(self) -> list[Any]:
        return [g for robot in self.env.robots for g in robot.gripper.values()]

    def get_sim_state(self) -> np.ndarray:
        """MuJoCo's integration state plus each gripper model's speed-limited command (robosuite integrates the
        gripper action outside MuJoCo; without it a replay's gripper torques differ from the first step)."""
        # Panda's starts as zeros(1) and becomes a (2,) pair after the first action: both broadcast to (2,).
        grip = [np.broadcast_to(np.asarray(g.current_action, np.float64), (2,)) for g in self._grippers()]
        return np.concatenate([get_physics_state(self.env.sim.model._model, self.env.sim.data._data), *grip])

    def set_sim_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, np.float64)
        grippers = self._grippers()
        n_grip = 2 * len(grippers)
        physics, grip = state[: state.shape[0] - n_grip], state[state.shape[0] - n_grip :]
        set_physics_state(self.env.sim.model._model, self.env.sim.data._data, physics)
        for i, g in enumerate(grippers):
            g.current_action = grip[2 * i : 2 * i + 2].copy()
        for robot in self.env.robots:  # controllers cache Jacobians and the pose they act relative to
            robot.composite_controller.update_state()
            for part in robot.composite_controller.part_controllers.values():
                part.update(force=True)
                part.reset_goal()
        self._raw = self.env._get_observations(force_update=True)

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self._seed = seed
        # robosuite's placement samplers share env.rng; reseeding it in place makes reset(seed=s) reproducible.
        self.env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self._raw = self.env.reset()
        for g in self._grippers():  # without a hard reset robosuite keeps the last episode's gripper command
            g.current_action = np.zeros(2)
        return self.observe(), {"success": False}

    def _controllers(self) -> list[Any]:
        return [p for robot in self.env.robots for p in robot.composite_controller.part_controllers.values()]

    def _controller_values(self) -> list[dict[str, Any]]:
        """Every controller's numeric attributes (goals, gains, cached kinematics)."""
        plain = (np.ndarray, float, int, bool, type(None))
        return [
            {k: copy.deepcopy(v) for k, v in vars(p).items() if isinstance(v, plain)}
            for p in self._controllers()
        ]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as what rebuilds it exactly, since robosuite's environment holds closures that do not pickle: the
        task and its episode's seed, MuJoCo's whole data (robosuite's controllers read the kinematics of the last
        substep's start, which the integration state alone does not give back), the gripper commands, the
        controllers' goals and cached kinematics, and robosuite's step counter (snapshots of a running online
        fine-tuning, ``sim.vector_env``)."""
        grip = [np.asarray(g.current_action, np.float64).copy() for g in self._grippers()]
        return {"name": self.spec_.name, "cameras": self.cameras, "image_size": self.image_size, "seed": self._seed,
                "data": self.env.sim.data._data, "grip": grip, "controllers": self._controller_values(),
                "timestep": self.env.timestep, "raw": self._raw,
                "obs_cache": copy.deepcopy(self.env._obs_cache), "np_random": self.np_random.bit_generator.state}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["cameras"], state["image_size"])  # type: ignore[misc]
        self.reset(seed=state["seed"])  # the episode's objects and placements; then its exact state
        mujoco.mj_copyData(self.env.sim.data._data, self.env.sim.model._model, state["data"])
        for g, a in zip(self._grippers(), state["grip"], strict=True):
            g.current_action = a
        for part, values in zip(self._controllers(), state["controllers"], strict=True):
            for k, v in values.items():
                setattr(part, k, v)
        self.env.timestep = state["timestep"]
        self._raw = state["raw"]
        # some observables read others' values from the last step's cache (Can's object-to-gripper vector)
        self.env._obs_cache = state["obs_cache"]
        self.np_random.bit_generator.state = state["np_random"]

    def step(self, action: np.ndarray):  # type: ignore[override]
        a = np.asarray(action, np.float64).reshape(7)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.spec_.name}: non-finite action {a}")
        self._raw, _, _, _ = self.env.step(np.clip(a, -1.0, 1.0))
        success = self.is_success()
        return self.observe(), float(success), success, False, {"success": success}

    def observe(self) -> dict[str, np.ndarray]:
        r = self._raw
        out = {
            "state": np.concatenate(
                [r["robot0_eef_pos"], r["robot0_eef_quat"], r["robot0_gripper_qpos"]]
            ).astype(np.float32),
            "object": np.asarray(r["object-state"], np.float32),
        }
        for cam in self.cameras:
            out[f"image_{cam}"] = np.ascontiguousarray(
                r[f"{cam}_image"][::-1]
            )  # robosuite renders upside down
        return out

    def is_success(self) -> bool:
        return bool(self.env._check_success())

    def object_position(self) -> np.ndarray:
        if self.spec_.name == "lift":
            return np.asarray(self._raw["cube_pos"], np.float64)
        return np.asarray(self._raw["Can_pos"], np.float64)

    def object_yaw(self) -> float:
        q = self._raw["cube_quat"] if self.spec_.name == "lift" else self._raw["Can_quat"]
        return float(Rotation.from_quat(q).as_euler("xyz")[2])

    def can_target(self) -> np.ndarray:
        env = self.env
        return np.asarray(env.target_bin_placements[env.object_to_id[env.obj_to_use.lower()]], np.float64)

    def make_expert(self, rng: np.random.Generator) -> Expert:
        if self.spec_.name == "lift":
            return LiftExpert(self, rng)
        return CanExpert(self, rng)

    def render_frame(self, camera: str | None = None, width: int = 640, height: int = 480) -> np.ndarray:
        cam = camera or "agentview"
        img = self.env.sim.render(camera_name=cam, width=width, height=height)
        return np.ascontiguousarray(img[::-1])

    def view_source(self) -> tuple[Any, np.ndarray, str]:
        model = self.env.sim.model._model
        return model, get_physics_state(model, self.env.sim.data._data), "agentview"

    def close(self) -> None:
        self.env.close()


def _up(z: float) -> np.ndarray:
    return np.array([0.0, 0.0, z])


class _OSCExpert(Expert):
    """Waypoint follower in OSC delta space: position and orientation errors, scaled and clipped to [-1, 1]."""

    def __init__(self, task: RobosuiteTask, rng: np.random.Generator) -> None:
        self.task = task
        self.rng = rng
        self.phase = 0
        self.t_phase = 0
        obs = task.observe()
        self.R_down = Rotation.from_quat(obs["state"][3:7])  # the gripper starts pointing down
        # Approach height and speed vary a little per episode, so demonstrations are not all identical.
        self.hover = float(rng.uniform(0.06, 0.1))
        self.gain = float(rng.uniform(8.0, 12.0))

    def _move(
        self, obs: dict[str, np.ndarray], target: np.ndarray, grip: float, yaw: float = 0.0
    ) -> np.ndarray:
        eef = obs["state"][:3].astype(np.float64)
        dpos = np.clip((target - eef) * self.gain, -1.0, 1.0)
        R_des = Rotation.from_euler("z", yaw) * self.R_down
        err = (R_des * Rotation.from_quat(obs["state"][3:7]).inv()).as_rotvec()
        drot = np.clip(err / 0.5 * 2.0, -1.0, 1.0)
        return np.concatenate([dpos, drot, [grip]]).astype(np.float32)

    def _advance(self, done: bool) -> None:
        self.t_phase += 1
        if done:
            self.phase += 1
            self.t_phase = 0


class LiftExpert(_OSCExpert):
    def __init__(self, task: RobosuiteTask, rng: np.random.Generator) -> None:
        super().__init__(task, rng)
        cube_yaw = task.object_yaw()
        grip_yaw = float(self.R_down.as_euler("xyz")[2])
        self.yaw = float((cube_yaw - grip_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        cube = self.task.object_position()
        eef = obs["state"][:3].astype(np.float64)
        if self.phase == 0:  # above the cube, aligned with its faces
            target = cube + _up(self.hover)
            a = self._move(obs, target, -1.0, self.yaw)
            self._advance(np.linalg.norm(target - eef) < 0.01 or self.t_phase > 60)
        elif self.phase == 1:  # down to grasp height
            target = cube + _up(-0.005)
            a = self._move(obs, target, -1.0, self.yaw)
            self._advance(np.linalg.norm(target - eef) < 0.008 or self.t_phase > 40)
        elif self.phase == 2:  # close
            a = self._move(obs, cube + _up(-0.005), 1.0, self.yaw)
            self._advance(self.t_phase >= 8)
        else:  # lift
            a = self._move(obs, np.array([eef[0], eef[1], cube[2] + 0.2]), 1.0, self.yaw)
            self._advance(False)
        return a


class CanExpert(_OSCExpert):
    def __init__(self, task: RobosuiteTask, rng: np.random.Generator) -> None:
        super().__init__(task, rng)
        self.target = task.can_target() + np.r_[rng.uniform(-0.02, 0.02, 2), 0.0]
        self.carry_z = float(rng.uniform(1.0, 1.05))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        can = self.task.object_position()
        eef = obs["state"][:3].astype(np.float64)
        if self.phase == 0:  # above the can
            target = can + _up(self.hover)
            a = self._move(obs, target, -1.0)
            self._advance(np.linalg.norm(target - eef) < 0.012 or self.t_phase > 60)
        elif self.phase == 1:  # down around it
            target = can + _up(0.0)
            a = self._move(obs, target, -1.0)
            self._advance(np.linalg.norm(target - eef) < 0.01 or self.t_phase > 40)
        elif self.phase == 2:  # grasp
            a = self._move(obs, can, 1.0)
            self._advance(self.t_phase >= 10)
        elif self.phase == 3:  # lift clear of the bin walls
            target = np.array([eef[0], eef[1], self.carry_z])
            a = self._move(obs, target, 1.0)
            self._advance(abs(target[2] - eef[2]) < 0.02 or self.t_phase > 60)
        elif self.phase == 4:  # carry over the target bin
            target = np.array([self.target[0], self.target[1], self.carry_z])
            a = self._move(obs, target, 1.0)
            self._advance(np.linalg.norm(target[:2] - eef[:2]) < 0.015 or self.t_phase > 100)
        elif self.phase == 5:  # lower
            target = np.array([self.target[0], self.target[1], self.target[2] + 0.12])
            a = self._move(obs, target, 1.0)
            self._advance(abs(target[2] - eef[2]) < 0.02 or self.t_phase > 40)
        else:  # release and back off
            a = self._move(obs, np.array([eef[0], eef[1], self.target[2] + 0.2]), -1.0)
            self._advance(False)
        return a
