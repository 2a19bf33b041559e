"""``push``: a native MuJoCo task -- a spherical pusher moves a box into a goal disc on a table.

Action: pusher velocity command in [-1, 1]^2 (x 0.3 m/s). Observations: ``state`` = pusher position and velocity,
``object`` = block position, block yaw as (cos, sin), goal position. Reward 1 on the success step, else 0; the
episode terminates on success (block centre within 3.5 cm of the goal) and truncates after ``max_steps``.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium import spaces

from robostack.data.schema import FeatureSpec
from robostack.sim.base import ASSETS, Expert, SimTask, TaskSpec, get_physics_state, set_physics_state

CONTROL_HZ = 20.0
MAX_SPEED = 0.3
GOAL_RADIUS = 0.035
BLOCK_HALF = 0.03
PUSHER_R = 0.02
WORKSPACE = 0.25

SPEC = TaskSpec(
    name="push",
    description="Push the box into the green goal disc (planar, native MuJoCo).",
    control_rate_hz=CONTROL_HZ,
    max_steps=200,
    obs={
        "state": FeatureSpec(
            "float32", (4,), names=["pusher_x", "pusher_y", "pusher_vx", "pusher_vy"], units="m, m/s"
        ),
        "object": FeatureSpec(
            "float32",
            (6,),
            names=["block_x", "block_y", "block_cos", "block_sin", "goal_x", "goal_y"],
            units="m",
        ),
    },
    action=FeatureSpec("float32", (2,), names=["vx_cmd", "vy_cmd"], units=f"x{MAX_SPEED} m/s"),
    action_low=(-1.0, -1.0),
    action_high=(1.0, 1.0),
    robot="planar point pusher",
    cameras=("top",),
)


class PushTask(SimTask):
    spec_ = SPEC

    def __init__(self, render_size: tuple[int, int] = (480, 640)) -> None:
        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / "push.xml"))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = round(1.0 / CONTROL_HZ / self.model.opt.timestep)
        self._goal_geom = self.model.geom("goal").id
        self._block_qadr = self.model.jnt_qposadr[self.model.joint("block_x").id]
        self._pusher_qadr = self.model.jnt_qposadr[self.model.joint("pusher_x").id]
        self._pusher_vadr = self.model.jnt_dofadr[self.model.joint("pusher_x").id]
        self.goal = np.zeros(2)
        self._renderer: mujoco.Renderer | None = None
        self._render_size = render_size
        self.observation_space = spaces.Dict(
            {k: spaces.Box(-np.inf, np.inf, v.shape, np.float32) for k, v in SPEC.obs.items()}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    # ------------------------------------------------------------------ state
    def get_sim_state(self) -> np.ndarray:
        """MuJoCo's integration state followed by the goal position (the goal is part of the task's state)."""
        return np.concatenate([get_physics_state(self.model, self.data), self.goal])

    def set_sim_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, np.float64)
        self._set_goal(state[-2:])
        set_physics_state(self.model, self.data, state[:-2])

    def _set_goal(self, goal: np.ndarray) -> None:
        self.goal = np.asarray(goal, np.float64).copy()
        self.model.geom_pos[self._goal_geom, :2] = self.goal

    # ------------------------------------------------------------------ gym
    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)
        block = rng.uniform(-0.12, 0.12, 2)
        for _ in range(100):
            ang = rng.uniform(-np.pi, np.pi)
            goal = block + rng.uniform(0.12, 0.2) * np.array([np.cos(ang), np.sin(ang)])
            if np.all(np.abs(goal) < WORKSPACE - 0.05):
                break
        for _ in range(100):
            pusher = rng.uniform(-WORKSPACE + 0.03, WORKSPACE - 0.03, 2)
            if np.linalg.norm(pusher - block) > 0.09:
                break
        self._set_goal(goal)
        q = self.data.qpos
        q[self._block_qadr : self._block_qadr + 2] = block
        q[self._block_qadr + 2] = rng.uniform(-np.pi, np.pi)
        q[self._pusher_qadr : self._pusher_qadr + 2] = pusher
        mujoco.mj_forward(self.model, self.data)
        return self.observe(), {"success": False}

    def step(self, action: np.ndarray):  # type: ignore[override]
        a = np.asarray(action, np.float64).reshape(2)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"push: non-finite action {a}")
        self.data.ctrl[:] = np.clip(a, -1.0, 1.0) * MAX_SPEED
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        success = self.is_success()
        return self.observe(), float(success), success, False, {"success": success}

    def observe(self) -> dict[str, np.ndarray]:
        q, v = self.data.qpos, self.data.qvel
        p = q[self._pusher_qadr : self._pusher_qadr + 2]
        pv = v[self._pusher_vadr : self._pusher_vadr + 2]
        b = q[self._block_qadr : self._block_qadr + 3]
        return {
            "state": np.array([p[0], p[1], pv[0], pv[1]], np.float32),
            "object": np.array([b[0], b[1], np.cos(b[2]), np.sin(b[2]), *self.goal], np.float32),
        }

    def is_success(self) -> bool:
        b = self.data.qpos[self._block_qadr : self._block_qadr + 2]
        return bool(np.linalg.norm(b - self.goal) < GOAL_RADIUS)

    def make_expert(self, rng: np.random.Generator) -> Expert:
        return PushExpert(side=1 if rng.random() < 0.5 else -1)

    def render_frame(self, camera: str | None = None, width: int = 640, height: int = 480) -> np.ndarray:
        if self._renderer is None or (self._renderer.height, self._renderer.width) != (height, width):
            self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        self._renderer.update_scene(self.data, camera=camera or "top")
        return self._renderer.render().copy()

    def view_source(self) -> tuple[mujoco.MjModel, np.ndarray, str]:
        return self.model, get_physics_state(self.model, self.data), "top"

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class PushExpert(Expert):
    """Gets behind the block (relative to the goal) and pushes it through its centre.

    When the block is in the way it goes around it on ``side`` (+1 left, -1 right), chosen at random per episode:
    the demonstrations are genuinely multimodal, as a diffusion policy's training data should be.
    """

    def __init__(self, side: int, gain: float = 12.0) -> None:
        self.side = side
        self.gain = gain

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        p = obs["state"][:2].astype(np.float64)
        o = obs["object"].astype(np.float64)
        block, goal = o[:2], o[4:6]
        to_goal = goal - block
        dist = np.linalg.norm(to_goal)
        u = to_goal / max(dist, 1e-6)
        n = np.array([-u[1], u[0]])
        standoff = BLOCK_HALF * 1.45 + PUSHER_R
        behind = block - u * standoff
        rel = p - block
        along, across = rel @ u, rel @ n
        if along < -standoff * 0.7 and abs(across) < 0.012:
            # Aligned behind the block: push through its centre towards the goal, correcting sideways drift.
            v = u * min(1.0, 0.35 + 6.0 * dist) - n * across * 25.0
        elif along < -standoff * 0.7 and np.linalg.norm(p - behind) < 0.04:
            v = (behind - p) * self.gain
        else:
            # Not behind: go around the block on this episode's side, keeping a clearance, then to `behind`.
            clear = standoff + 0.03
            if along > -standoff * 0.7 and abs(across) < clear:
                side = self.side if abs(across) < 0.01 else np.sign(across)
                target = block + n * side * clear + u * (min(along, clear) - 0.05)
            else:
                target = behind
            v = (target - p) * self.gain
        norm = np.linalg.norm(v)
        if norm > 1.0:
            v = v / norm
        return v.astype(np.float32)
