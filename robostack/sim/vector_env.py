"""A step-wise batched environment over N copies of a task: the online RL methods' rollouts.

``reset()`` starts every copy; ``step(actions)`` steps all N at once and resets each copy whose episode ended
(success ends an episode as ``terminated``, the task's step limit as ``truncated``). The observation a step reached
is returned as ``final_obs`` for every copy (what a replay buffer needs as s'), and ``obs`` holds the next
episode's first observation where a copy reset. Copy i's k-th episode has seed ``seed + i + k * N``, so which
episode gets which seed depends neither on the number of worker processes nor on timing. Every copy also keeps the
task's scripted expert for its episode (``expert_actions()``), which simulated interveners and demonstrations need,
optionally degraded to a success level.

``workers=0`` runs the copies in this process (best for the cheap ``push``, whose step costs less than a message
between processes); ``workers=W`` spreads them over W processes (``spawn``: MuJoCo/EGL contexts do not survive
fork), each owning a contiguous slice, stepped in parallel.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from robostack.errors import RobostackError
from robostack.sim.base import TaskSpec


@dataclass
class _Outcome:
    """What a step and a chunk report alike, per copy."""

    reward: np.ndarray
    """The step's reward (a chunk: summed over the steps executed)."""
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    final_obs: dict[str, np.ndarray]
    """(N, ...) per key: the observation the step (or chunk) reached, before any reset (s' of the transition)."""
    episode_seed: np.ndarray
    """Seed of the episode each step belonged to."""
    episode_length: np.ndarray
    """Steps taken in that episode so far, this one included."""

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


@dataclass
class VectorStep(_Outcome):
    obs: dict[str, np.ndarray]
    """(N, ...) per ``obs/<name>`` key: what each copy observes now (a reset copy: its new episode's first observation)."""


@dataclass
class ChunkStep(_Outcome):
    obs_history: dict[str, np.ndarray]
    """(N, T_o, ...) per ``obs/<name>`` key: each copy's last T_o observations now."""
    executed: np.ndarray
    """Steps each copy executed (fewer than T_a where its episode ended)."""


class _Copies:
    """Copies ``first .. first + n - 1`` of the N, in one process."""

    def __init__(
        self,
        task_name: str,
        task_kwargs: dict[str, Any],
        first: int,
        n: int,
        total: int,
        seed: int,
        level: float,
    ) -> None:
        from robostack.sim.registry import make_task

        self.task_name, self.level = task_name, level
        self.tasks = [make_task(task_name, **task_kwargs) for _ in range(n)]
        self.spec: TaskSpec = self.tasks[0].task_spec
        self.index = list(range(first, first + n))
        self.total, self.seed = total, seed
        self.episodes = [0] * n
        self.steps = [0] * n
        self.seeds = [0] * n
        self.obs: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        self.experts: list[Any] = [None] * n
        self.hist: list[list[dict[str, np.ndarray]]] = [
            [] for _ in range(n)
        ]  # step_chunk's observation history

    def _start(self, j: int) -> None:
        seed = self.seed + self.index[j] + self.episodes[j] * self.total
        self.episodes[j] += 1
        self.seeds[j], self.steps[j] = seed, 0
        self.obs[j], _ = self.tasks[j].reset(seed=seed)
        # the expert's own choices come from their own stream, never the env's
        from robostack.sim.quality import degraded_expert

        rng = np.random.default_rng([seed, 0x5EED])
        self.experts[j] = degraded_expert(self.task_name, self.level, self.tasks[j].make_expert(rng), rng)

    def reset(self) -> list[dict[str, np.ndarray]]:
        for j in range(len(self.tasks)):
            self._start(j)
            self.hist[j] = []
        return list(self.obs)

    def step(self, actions: np.ndarray) -> list[tuple]:
        out = []
        for j, task in enumerate(self.tasks):
            obs, reward, terminated, truncated, info = task.step(actions[j])
            self.steps[j] += 1
            truncated = bool(truncated) or (self.steps[j] >= self.spec.max_steps and not terminated)
            row = (obs, float(reward), bool(terminated), truncated, bool(info.get("success", terminated)),
                   self.seeds[j], self.steps[j])  # fmt: skip
            if terminated or truncated:
                self._start(j)
            else:
                self.obs[j] = obs
            self.hist[j] = []  # step_chunk's history restarts from the current observation
            out.append((*row, self.obs[j]))
        return out

    def step_chunk(self, actions: np.ndarray, history: int) -> list[tuple]:
        """Each copy executes its (T_a, Da) chunk until the chunk or its episode ends; per copy: (summed reward,
        terminated, truncated, success, seed, episode length, steps executed, final obs, obs history now)."""
        out = []
        for j, task in enumerate(self.tasks):
            if not self.hist[j]:
                self.hist[j] = [self.obs[j]] * history
            total, end = 0.0, (False, False, False)
            for t in range(actions.shape[1]):
                obs, reward, terminated, truncated, info = task.step(actions[j, t])
                self.steps[j] += 1
                total += float(reward)
                truncated = bool(truncated) or (self.steps[j] >= self.spec.max_steps and not terminated)
                end = (bool(terminated), truncated, bool(info.get("success", terminated)))
                self.hist[j] = [*self.hist[j][1:], obs]
                if terminated or truncated:
                    break
            row = (total, *end, self.seeds[j], self.steps[j], t + 1, self.hist[j][-1])
            if end[0] or end[1]:
                self._start(j)
                self.hist[j] = [self.obs[j]] * history  # a new episode's history is its first frame, repeated
            else:
                self.obs[j] = self.hist[j][-1]
            out.append((*row, list(self.hist[j])))
        return out

    def expert_actions(self) -> list[np.ndarray]:
        return [np.asarray(e.act(o), np.float32) for e, o in zip(self.experts, self.obs, strict=True)]

    def expert_decisions(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(action, intent) per copy: a degraded expert's command and its undegraded expert's (the same array for
        an expert that is not degraded)."""
        out = []
        for a, e in zip(self.expert_actions(), self.experts, strict=True):
            intent = getattr(e, "intent", None)
            out.append((a, a if intent is None else np.asarray(intent, np.float32)))
        return out

    def snapshot(self) -> list[bytes]:
        """Each copy's whole state (simulator, expert, counters, observation history), one blob per copy: restoring
        them continues every episode exactly, whatever the number of worker processes then."""
        return [
            pickle.dumps(
                (
                    self.tasks[j],
                    self.experts[j],
                    self.episodes[j],
                    self.steps[j],
                    self.seeds[j],
                    self.obs[j],
                    self.hist[j],
                )
            )  # fmt: skip
            for j in range(len(self.tasks))
        ]

    def restore(self, blobs: list[bytes]) -> list[bool]:
        for j, blob in enumerate(blobs):
            (self.tasks[j], self.experts[j], self.episodes[j], self.steps[j], self.seeds[j], self.obs[j],
             self.hist[j]) = pickle.loads(blob)  # fmt: skip
        return [True] * len(blobs)


def _worker(conn: Any, args: tuple) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        copies = _Copies(*args)
        conn.send(("ok", copies.spec))
    except Exception as exc:  # reported to the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        cmd, payload = conn.recv()
        if cmd == "close":
            return
        try:
            result = getattr(copies, cmd)(*payload)
            conn.send(("ok", result))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class VectorEnv:
    def __init__(
        self,
        task: str,
        num_envs: int,
        seed: int,
        workers: int = 0,
        task_kwargs: dict[str, Any] | None = None,
        expert_level: float = 1.0,
    ) -> None:
        """``expert_level``: the copies' experts degraded to about that success rate (``sim.quality``)."""
        if num_envs < 1:
            raise RobostackError(f"num_envs must be at least 1, got {num_envs}")
        if workers < 0 or workers > num_envs:
            raise RobostackError(f"workers must be in [0, num_envs = {num_envs}], got {workers}")
        self.num_envs, self.seed, self.level = num_envs, seed, expert_level
        kwargs = task_kwargs or {}
        self._local: _Copies | None = None
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        if workers == 0:
            self._local = _Copies(task, kwargs, 0, num_envs, num_envs, seed, expert_level)
            self.spec = self._local.spec
        else:
            self.spec = self._start_workers(task, kwargs, workers)
        self._action_dim = self.spec.action.shape[0]

    def _start_workers(self, task: str, kwargs: dict[str, Any], workers: int) -> TaskSpec:
        ctx = mp.get_context("spawn")
        bounds = np.linspace(0, self.num_envs, workers + 1).astype(int)
        self._slices = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        for first, stop in self._slices:
            parent, child = ctx.Pipe()
            args = (task, kwargs, first, stop - first, self.num_envs, self.seed, self.level)
            proc = ctx.Process(target=_worker, args=(child, args), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        specs = [self._receive(c) for c in self._conns]
        return specs[0]

    def _receive(self, conn: Any) -> Any:
        try:
            status, value = conn.recv()
        except EOFError:
            self.close()
            raise RobostackError("a simulation worker died") from None
        if status != "ok":
            self.close()
            raise RobostackError(f"simulation worker failed: {value}")
        return value

    def _call(self, cmd: str, per_slice: list[tuple] | None = None) -> list[Any]:
        if self._local is not None:
            return getattr(self._local, cmd)(*(per_slice[0] if per_slice else ()))
        for i, conn in enumerate(self._conns):
            conn.send((cmd, per_slice[i] if per_slice else ()))
        return [item for conn in self._conns for item in self._receive(conn)]

    def _slice_args(self, actions: np.ndarray) -> list[tuple]:
        if self._local is not None:
            return [(actions,)]
        return [(actions[a:b],) for a, b in self._slices]

    def reset(self) -> dict[str, np.ndarray]:
        return _stack(self._call("reset"))

    def step(self, actions: np.ndarray) -> VectorStep:
        actions = np.asarray(actions, np.float32)
        if actions.shape != (self.num_envs, self._action_dim):
            raise RobostackError(
                f"actions have shape {actions.shape}, expected {(self.num_envs, self._action_dim)}"
            )
        if not np.isfinite(actions).all():
            raise RobostackError("actions hold NaN or Inf")
        rows = self._call("step", self._slice_args(actions))
        final, reward, terminated, truncated, success, seeds, lengths, now = zip(*rows, strict=True)
        return VectorStep(
            obs=_stack(now),
            reward=np.asarray(reward, np.float32),
            terminated=np.asarray(terminated, bool),
            truncated=np.asarray(truncated, bool),
            success=np.asarray(success, bool),
            final_obs=_stack(final),
            episode_seed=np.asarray(seeds, np.int64),
            episode_length=np.asarray(lengths, np.int64),
        )

    def step_chunk(self, actions: np.ndarray, history: int = 1) -> ChunkStep:
        """Execute an action chunk per copy (N, T_a, Da): each copy runs its chunk until it or its episode ends (the
        rest of the chunk is dropped), resetting where the episode ended. ``history`` = the policy's T_o: the
        returned ``obs_history`` (N, T_o, ...) holds each copy's last T_o observations (a new episode: its first
        observation repeated, as the policies pad at an episode start)."""
        actions = np.asarray(actions, np.float32)
        if actions.ndim != 3 or actions.shape[0] != self.num_envs or actions.shape[2] != self._action_dim:
            raise RobostackError(
                f"chunks have shape {actions.shape}, expected ({self.num_envs}, T_a, {self._action_dim})"
            )
        if not np.isfinite(actions).all():
            raise RobostackError("actions hold NaN or Inf")
        if history < 1:
            raise RobostackError(f"history must be at least 1, got {history}")
        per_slice = [(a, history) for (a,) in self._slice_args(actions)]
        rows = self._call("step_chunk", per_slice)
        reward, term, trunc, succ, seeds, lengths, executed, final, hist = zip(*rows, strict=True)
        return ChunkStep(
            obs_history=_stack_history(hist),
            reward=np.asarray(reward, np.float32),
            terminated=np.asarray(term, bool),
            truncated=np.asarray(trunc, bool),
            success=np.asarray(succ, bool),
            final_obs=_stack(final),
            episode_seed=np.asarray(seeds, np.int64),
            episode_length=np.asarray(lengths, np.int64),
            executed=np.asarray(executed, np.int64),
        )

    def expert_actions(self) -> np.ndarray:
        """(N, Da): each copy's scripted expert's action for its current observation."""
        return np.stack(self._call("expert_actions"))

    def expert_decisions(self) -> tuple[np.ndarray, np.ndarray]:
        """((N, Da), (N, Da)): what each copy's expert would execute now, and what its undegraded expert intends.
        A simulated intervener judges by the intent and acts with the action: a person tells a robot going wrong
        better than they drive it themselves, which is the premise of learning from interventions."""
        pairs = self._call("expert_decisions")
        return np.stack([a for a, _ in pairs]), np.stack([i for _, i in pairs])

    def snapshot(self) -> list[bytes]:
        """Every copy's state, one blob per copy (``restore`` takes it back in a VectorEnv of the same task, copies
        and seed, with any number of workers): what an exact ``--resume`` of an online run needs."""
        return list(self._call("snapshot"))

    def restore(self, blobs: list[bytes]) -> None:
        if len(blobs) != self.num_envs:
            raise RobostackError(f"the snapshot holds {len(blobs)} copies, this environment {self.num_envs}")
        if self._local is not None:
            self._local.restore(blobs)
        else:
            self._call("restore", [(blobs[a:b],) for a, b in self._slices])

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close", ()))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self._conns, self._procs = [], []

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stack_history(hist: tuple) -> dict[str, np.ndarray]:
    """Per-copy lists of T_o observations -> (N, T_o, ...) per ``obs/<name>`` key."""
    return {f"obs/{k}": np.stack([np.stack([o[k] for o in h]) for h in hist]) for k in hist[0][0]}


def _stack(obs: list[dict[str, np.ndarray]] | tuple) -> dict[str, np.ndarray]:
    """Per-copy observations -> one (N, ...) array per store key (``obs/<name>``, as stores and policies name them)."""
    return {f"obs/{k}": np.stack([o[k] for o in obs]) for k in obs[0]}
