"""One episode in, one dict of per-step arrays out -- the row convention every store and replay relies on.

Row t holds the observation *before* step t (``obs/<k>``), the physics state before it (``sim_state``), the action
taken, and what the step returned (``reward``, ``terminated``, ``truncated``). Where demonstrations relabel what was
executed (DART), ``action`` holds the label and ``executed_action`` the command the simulator received. Where some
steps are not demonstrations (injected perturbations), ``imitate`` is False on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robostack.data.schema import IMITATE_KEY, FeatureSpec
from robostack.sim.base import Expert, SimTask


@dataclass
class Episode:
    data: dict[str, np.ndarray]
    success: bool
    seed: int
    tier: str

    @property
    def length(self) -> int:
        return int(self.data["action"].shape[0])


def episode_features(task: SimTask, labelled: bool = False, masked: bool = False) -> dict[str, FeatureSpec]:
    """The store features a simulated rollout of ``task`` writes (``labelled``: with ``executed_action``;
    ``masked``: with ``imitate``)."""
    spec = task.task_spec
    feats = {f"obs/{k}": v for k, v in spec.obs.items()}
    feats["action"] = spec.action
    if labelled:
        a = spec.action
        feats["executed_action"] = FeatureSpec(
            a.dtype,
            a.shape,
            names=a.names,
            units=a.units,
            description="command executed (action is its label)",
        )
    if masked:
        feats[IMITATE_KEY] = FeatureSpec(
            "bool",
            (),
            description="the action is a demonstration to imitate (False: an injected perturbation)",
        )
    feats["reward"] = FeatureSpec("float32", ())
    feats["terminated"] = FeatureSpec("bool", (), description="task success ended the episode")
    feats["truncated"] = FeatureSpec("bool", (), description="time limit ended the episode")
    feats["timestamp"] = FeatureSpec("float64", (), units="s", description="time since episode start")
    feats["is_intervention"] = FeatureSpec("bool", (), description="a human had taken over at this step")
    feats["sim_state"] = FeatureSpec(
        "float64", (task.sim_state_size(),), description="full physics state before the step (replay, reset)"
    )
    return feats


def run_episode(
    task: SimTask,
    make_actor: Callable[[], Expert],
    seed: int,
    tier: str,
    max_steps: int | None = None,
    labelled: bool = False,
    masked: bool = False,
) -> Episode:
    """Reset with ``seed``, build the actor for that initial state, run until success or the time limit.

    ``labelled`` records the actor's label as ``action`` and its executed command as ``executed_action``;
    ``masked`` records the actor's ``imitating`` flag (True where it has none) as ``imitate``.
    """
    spec = task.task_spec
    max_steps = max_steps or spec.max_steps
    obs, _ = task.reset(seed=seed)
    actor = make_actor()
    rows: dict[str, list[np.ndarray]] = {k: [] for k in episode_features(task, labelled, masked)}
    success = False
    for t in range(max_steps):
        state = task.get_sim_state()
        executed, label = actor.act_labelled(obs)
        executed = np.asarray(executed, np.float32)
        for k, v in obs.items():
            rows[f"obs/{k}"].append(v)
        rows["sim_state"].append(state)
        if labelled:
            rows["action"].append(np.asarray(label, np.float32))
            rows["executed_action"].append(executed)
        else:
            rows["action"].append(executed)
        if masked:
            rows[IMITATE_KEY].append(np.bool_(getattr(actor, "imitating", True)))
        obs, reward, terminated, truncated, info = task.step(executed)
        truncated = truncated or (t == max_steps - 1 and not terminated)
        rows["reward"].append(np.float32(reward))
        rows["terminated"].append(np.bool_(terminated))
        rows["truncated"].append(np.bool_(truncated))
        rows["timestamp"].append(np.float64(t / spec.control_rate_hz))
        rows["is_intervention"].append(np.bool_(False))
        success = bool(info.get("success", terminated))
        if terminated or truncated:
            break
    return Episode(data={k: np.stack(v) for k, v in rows.items()}, success=success, seed=seed, tier=tier)


def replay_episode(task: SimTask, data: dict[str, np.ndarray], seed: int = -1) -> tuple[float, bool]:
    """Re-execute recorded commands (``executed_action`` where the store has it, else ``action``) from the recorded
    first state; return the largest state deviation seen against the recorded states, and whether the replay
    reached success where the recording did.

    With the episode's seed, the initial state comes from ``reset(seed)`` (compared against the recorded one), so
    simulator-side state outside MuJoCo's (robosuite's controller goals right after a reset) matches too.
    """
    states, actions = data["sim_state"], data.get("executed_action", data["action"])
    worst = 0.0
    if seed >= 0:
        task.reset(seed=seed)
        worst = float(np.max(np.abs(task.get_sim_state() - states[0])))
    else:
        task.set_sim_state(states[0])
    success = False
    for t in range(actions.shape[0]):
        _, _, terminated, _, info = task.step(actions[t])
        success = success or bool(info.get("success", terminated))
        if t + 1 < states.shape[0]:
            worst = max(worst, float(np.max(np.abs(task.get_sim_state() - states[t + 1]))))
    return worst, success
