"""Render a task's scene from a physics state on a render thread, so a viewer never takes time from control.

``SimTask.view_source()`` gives (MuJoCo model, physics state, camera); ``ViewThread`` keeps its own ``MjData`` per
model and its own renderer (its GL context lives on the thread), renders the latest submitted state and drops
the states it could not get to. MuJoCo releases the GIL while it renders, so on a machine with a spare core the
control loop runs at full rate while frames are drawn beside it. A viewer's frames skip multisampling, shadows,
reflections and the skybox, and a software GL renders on one thread: cheap frames, a core left for control.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from robostack.sim.base import set_physics_state


class ViewThread:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._cv = threading.Condition()
        self._job: tuple[Any, np.ndarray, str] | None = None
        self._frame: np.ndarray | None = None
        self.frames = 0
        """Frames rendered so far (a consumer compares it to know whether a frame is new)."""
        self._stop = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="robostack-view", daemon=True)
        self._thread.start()

    def submit(self, model: Any, physics_state: np.ndarray, camera: str) -> None:
        """Render this state next (replacing any state still waiting)."""
        with self._cv:
            self._job = (model, np.array(physics_state, np.float64), camera)
            self._cv.notify()

    def latest(self) -> tuple[np.ndarray | None, int]:
        """The last rendered frame and its number."""
        with self._cv:
            return self._frame, self.frames

    def _run(self) -> None:
        # A software GL (llvmpipe, no GPU) renders with one thread per core by default: keep one core for control.
        os.environ.setdefault("LP_NUM_THREADS", "1")
        import mujoco

        renderer = data = model = None
        try:
            while True:
                with self._cv:
                    while self._job is None and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
                    job, self._job = self._job, None
                m, state, camera = job
                if m is not model:  # a rebuilt model (robosuite's hard resets): new data and renderer
                    if renderer is not None:
                        renderer.close()
                    # a viewer's frame need not be pretty: no multisampling (visual only, physics unchanged)
                    m.vis.quality.offsamples = 0
                    model, data = m, mujoco.MjData(m)
                    renderer = mujoco.Renderer(m, self.height, self.width)
                    for flag in (mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SHADOW,
                                 mujoco.mjtRndFlag.mjRND_SKYBOX):  # fmt: skip
                        renderer.scene.flags[flag] = False
                set_physics_state(model, data, state)
                renderer.update_scene(data, camera=camera)
                frame = renderer.render().copy()
                with self._cv:
                    self._frame = frame
                    self.frames += 1
        except BaseException as exc:  # shown by the consumer, which must not hang on a dead thread
            self.error = exc
        finally:
            if renderer is not None:
                renderer.close()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=5)
