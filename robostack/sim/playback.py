"""Replay (determinism check) and offscreen rendering of recorded episodes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robostack.data.store import EpisodeStore
from robostack.errors import RobostackError, StoreError
from robostack.sim.registry import make_task, task_names, task_spec
from robostack.sim.rollout import replay_episode


def _task_for(store: EpisodeStore, index: int) -> str:
    ep = store.episodes()[index]
    if ep.task not in task_names():
        raise StoreError(
            f"episode {index} was recorded on task '{ep.task}', which is not a robostack sim task"
        )
    if "sim_state" not in store.keys:
        raise StoreError(
            f"{store.path}: no 'sim_state' key; only simulated episodes can be replayed or rendered"
        )
    return ep.task


@dataclass
class ReplayResult:
    episode: int
    task: str
    steps: int
    max_state_deviation: float
    recorded_success: bool
    replayed_success: bool


def replay(path: str | os.PathLike[str], episode: int) -> ReplayResult:
    store = EpisodeStore(path)
    if not 0 <= episode < store.n_episodes:
        raise StoreError(f"{path}: episode {episode} out of range (store has {store.n_episodes})")
    task_name = _task_for(store, episode)
    keys = ["sim_state", "action", *(["executed_action"] if "executed_action" in store.keys else [])]
    data = store.read_episode(episode, keys)
    task = make_task(task_name)
    try:
        task.reset(seed=0)
        if data["sim_state"].shape[1] != task.sim_state_size():
            raise StoreError(
                f"sim_state has {data['sim_state'].shape[1]} values, task '{task_name}' needs {task.sim_state_size()}"
            )
        dev, success = replay_episode(task, data, seed=store.episodes()[episode].seed)
    finally:
        task.close()
    return ReplayResult(
        episode=episode,
        task=task_name,
        steps=int(data["action"].shape[0]),
        max_state_deviation=dev,
        recorded_success=store.episodes()[episode].success,
        replayed_success=success,
    )


def render(
    path: str | os.PathLike[str],
    episode: int,
    out: str | os.PathLike[str],
    camera: str | None = None,
    width: int = 640,
    height: int = 480,
    progress: bool = True,
) -> int:
    """Render an episode's recorded states to a video file; returns the number of frames."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import imageio.v2 as imageio

    store = EpisodeStore(path)
    if not 0 <= episode < store.n_episodes:
        raise StoreError(f"{path}: episode {episode} out of range (store has {store.n_episodes})")
    task_name = _task_for(store, episode)
    states = store.read_episode(episode, ["sim_state"])["sim_state"]
    spec = task_spec(task_name)
    camera = camera or (spec.cameras[0] if spec.cameras else None)
    if camera is not None and spec.cameras and camera not in spec.cameras:
        raise RobostackError(
            f"task {task_name} has no camera '{camera}' (choose from {', '.join(spec.cameras)})"
        )
    task = make_task(task_name, cameras=(camera,)) if camera else make_task(task_name)
    fps = store.info.control_rate_hz or 20.0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        task.reset(seed=0)
        writer = imageio.get_writer(out, fps=fps, codec="libx264", quality=7, macro_block_size=8)
        try:
            for s in tqdm(
                states, desc="render", unit="frame", disable=None if progress else True, leave=False
            ):
                task.set_sim_state(s)
                writer.append_data(task.render_frame(camera, width, height))
        finally:
            writer.close()
    except RobostackError:
        raise
    except Exception as exc:
        raise RobostackError(
            f"offscreen rendering failed ({type(exc).__name__}: {exc}); is EGL available?"
        ) from None
    finally:
        task.close()
    return int(np.asarray(states).shape[0])
