"""Build a composite (GPC) policy from trained policy folders, and save it as one self-contained policy folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from robostack.config import to_dict
from robostack.data.normalize import KeyStats, load_stats
from robostack.errors import RobostackError
from robostack.policies.base import Policy
from robostack.policies.checkpoint import load_policy, read_policy_meta, save_policy
from robostack.policies.families.composed import (
    ComposedConfig,
    ComposedPolicy,
    check_composable,
    check_weights,
    composed_spec,
    parent_prefix,
)
from robostack.policies.loading import resolve_policy_folder


def parse_weights(text: str) -> list[float]:
    """``0.7,0.3`` -> [0.7, 0.3], with a one-line error for anything else."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RobostackError(f"--weights takes comma-separated numbers, got '{text}'") from None


def compose(
    policies: list[str | os.PathLike[str]],
    weights: list[float],
    n_action_steps: int | None = None,
    num_steps: int = 0,
) -> tuple[ComposedPolicy, dict[str, KeyStats], dict[str, Any]]:
    """(composite, its statistics, provenance for its ``policy.json``) from run or policy folders.

    ``n_action_steps`` defaults to the first parent's; parents are checked (``check_composable``) before any weight
    is copied, so an incompatible pair costs one line, not a half-written folder."""
    if len(policies) < 2:
        raise RobostackError(f"compose needs at least two --policy, got {len(policies)}")
    check_weights(weights, len(policies))
    folders = [resolve_policy_folder(p) for p in policies]
    parents: list[Policy] = [load_policy(f) for f in folders]
    names = [str(p) for p in policies]
    check_composable(parents, names)
    stats: dict[str, KeyStats] = {}
    entries = []
    for i, (folder, parent) in enumerate(zip(folders, parents, strict=True)):
        meta = read_policy_meta(folder)
        for k, v in load_stats(folder).items():
            stats[parent_prefix(i) + k] = v
        entries.append(
            {
                "type": parent.family,
                "config": to_dict(parent.config),
                "spec": parent.spec.to_json(),
                "source": str(Path(folder).resolve()),
                "stats_hash": meta.get("stats_hash", ""),
                "data": meta.get("data", {}),
            }
        )
    first = parents[0].config
    cfg = ComposedConfig(
        horizon=max(p.config.horizon for p in parents),
        n_obs_steps=first.n_obs_steps,
        n_action_steps=n_action_steps or first.n_action_steps,
        obs_keys=[],
        parents=entries,
        weights=[float(w) for w in weights],
        num_steps=num_steps,
    )
    policy = ComposedPolicy(cfg, composed_spec(parents), stats)
    for target, parent in zip(policy.parents, parents, strict=True):
        target.load_state_dict(parent.state_dict())
    provenance = {
        "composition": {
            "parents": [e["source"] for e in entries],
            "families": [e["type"] for e in entries],
            "weights": cfg.weights,
            "sampler": policy.sampler,
            "steps": policy.num_steps,
        }
    }
    return policy.eval(), stats, provenance


def save_composite(
    policy: ComposedPolicy,
    stats: dict[str, KeyStats],
    provenance: dict[str, Any],
    out: str | os.PathLike[str],
) -> Path:
    """The composite as a policy folder (the weights recorded in its config and provenance)."""
    out = Path(out)
    if (out / "policy.json").exists() or (out.exists() and any(out.iterdir())):
        raise RobostackError(f"{out}: exists and is not empty (choose another --out)")
    provenance = {**provenance, "composition": {**provenance["composition"], "weights": policy.weights}}
    return save_policy(policy, out, stats, extra=provenance)
