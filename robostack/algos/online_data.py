"""What the online methods write and check: every environment step of every copy into a store, episode by episode,
with the executed action, the policy's proposal and who drove; and whether a policy fits a task at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robostack.algos.interventions import IntervenerConfig
from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeWriter
from robostack.errors import RobostackError

ONLINE_SEEDS = 3_000_000
"""Online training episodes take seeds from here (above every evaluation range; demonstrations stay below 100,000)."""


@dataclass
class OnlineRunConfig:
    """What every online fine-tuning run in simulation shares."""

    algo: str = ""
    from_run: str = ""
    """Training run or policy folder of the starting policy (single-step: horizon 1)."""
    task: str = ""
    """Simulated task to fine-tune in; empty with ``data``: learn from the recorded sessions only (robot data: no
    simulator, no task reward)."""
    data: list[str] = field(default_factory=list)
    """Stores of recorded sessions / offline data (with ``task``: mixed into the replay; without: all there is)."""
    env_steps: int = 20_000
    """Environment steps in all (over every copy)."""
    envs: int = 8
    workers: int = 0
    """Simulation processes (0: the copies step in this process)."""
    seed: int = 0
    expert_level: float = 0.6
    """The intervening expert's own success level (``robostack.sim.quality.EXPERT_LEVELS``)."""
    intervener: IntervenerConfig = field(default_factory=IntervenerConfig)
    eval_episodes: int = 50
    """Episodes of the final evaluation without interventions (train-eval seed range)."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.intervener, dict):
            self.intervener = IntervenerConfig(**self.intervener)
        if not self.from_run:
            raise RobostackError("--from is required: the behaviour-cloned policy to start from")
        if not self.task and not self.data:
            raise RobostackError(
                "give --task (fine-tune in simulation) or --data (learn from recorded sessions)"
            )
        if self.env_steps < self.envs or self.envs < 1:
            raise RobostackError(f"need env_steps ({self.env_steps}) >= envs ({self.envs}) >= 1")


class EpisodeRows:
    """Each copy's rows of its running episode; a finished episode is written to the store whole.

    ``written``: episodes of this run's history in the store (at a resume, those before its checkpoint). Episodes
    the store holds beyond them were recorded by the killed run after its checkpoint; the resumed run finishes the
    same episodes again, so each is checked against the recorded one instead of written twice."""

    def __init__(self, writer: EpisodeWriter, n: int, task: str, rate: float, written: int = 0) -> None:
        self.writer, self.task, self.rate = writer, task, rate
        self.rows: list[dict[str, list[np.ndarray]]] = [{} for _ in range(n)]
        self.index = written

    def add(self, i: int, row: dict[str, np.ndarray]) -> None:
        for k, v in row.items():
            self.rows[i].setdefault(k, []).append(v)

    def flush(self, seeds: np.ndarray) -> None:
        """Write every running episode, cut short by the end of the run (its last row marked ``truncated``)."""
        for i, rows in enumerate(self.rows):
            if rows:
                rows["truncated"][-1] = np.bool_(True)
                self.finish(i, False, int(seeds[i]))

    def finish(self, i: int, success: bool, seed: int) -> None:
        data = {k: np.stack(v) for k, v in self.rows[i].items()}
        data["timestamp"] = np.arange(len(data["action"]), dtype=np.float64) / self.rate
        quality = "policy" if not data["is_intervention"].any() else "human"
        source = "intervention" if data["is_intervention"].any() else "sim"
        if self.index < self.writer.n_episodes:
            self._check_recorded(self.index, data, seed)
        else:
            self.writer.add_episode(
                data, success=success, source=source, task=self.task, seed=seed, quality=quality
            )
        self.index += 1
        self.rows[i] = {}

    def _check_recorded(self, index: int, data: dict[str, np.ndarray], seed: int) -> None:
        from robostack.data.store import EpisodeStore

        store = EpisodeStore(self.writer.path)
        meta = store.episodes()[index]
        recorded = store.read_episode(index, ["action", "is_intervention"])
        same = meta.seed == seed and all(np.array_equal(recorded[k], data[k]) for k in recorded)
        if not same:
            raise RobostackError(
                f"{self.writer.path}: the resumed run's episode {index} differs from the one recorded before the "
                "kill (the resume is not exact on this machine)"
            )


def online_features(spec: Any) -> dict[str, FeatureSpec]:
    feats = {f"obs/{k}": v for k, v in spec.obs.items()}
    feats["action"] = spec.action
    feats["policy_action"] = FeatureSpec(
        spec.action.dtype, spec.action.shape, description="the policy's proposal"
    )
    feats["reward"] = FeatureSpec("float32", (), description="the task's reward")
    feats["terminated"] = FeatureSpec("bool", ())
    feats["truncated"] = FeatureSpec("bool", ())
    feats["is_intervention"] = FeatureSpec("bool", (), description="the expert drove this step")
    feats["timestamp"] = FeatureSpec("float64", (), units="s")
    return feats


def check_fits(policy_spec: Any, spec: Any) -> None:
    want = {f"obs/{k}": v.shape for k, v in spec.obs.items()}
    for k, v in policy_spec.obs.items():
        if tuple(want.get(k, ())) != tuple(v.shape) or k not in want:
            raise RobostackError(
                f"the policy's observation '{k}' {tuple(v.shape)} does not fit task '{spec.name}'"
            )
    if tuple(policy_spec.action.shape) != tuple(spec.action.shape):
        raise RobostackError(
            f"the policy's action {policy_spec.action.shape} does not fit task '{spec.name}'"
        )


def online_store_info(spec: Any, task: str) -> StoreInfo:
    """The store of a run's online episodes for task ``spec``."""
    return StoreInfo(
        control_rate_hz=spec.control_rate_hz,
        features=online_features(spec),
        tasks=[task],
        extra={"task_spec": spec.to_json()},
    )


def action_scale(spec: Any) -> np.ndarray:
    """Half of each action dimension's range: what maps an action difference to [-1, 1] units."""
    low, high = np.asarray(spec.action_low, np.float64), np.asarray(spec.action_high, np.float64)
    return np.where(high > low, (high - low) / 2, 1.0)
