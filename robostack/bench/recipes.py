"""A suite entry's training config (policy config + dataset + overrides) and how far a run folder has trained."""

from __future__ import annotations

from pathlib import Path

from robostack.config import apply_overrides, from_dict, load_yaml
from robostack.policies.loading import LAST
from robostack.sim.base import REPO_ROOT
from robostack.train.config import TrainConfig

POLICIES = REPO_ROOT / "configs" / "policies"


def train_config(policy_name: str, data: Path, overrides: list[str]) -> TrainConfig:
    cfg = load_yaml(POLICIES / f"{policy_name}.yaml")
    cfg = apply_overrides(cfg, [f"data.path={data}", "eval.episodes=0", *overrides])
    return from_dict(TrainConfig, cfg)


def trained_steps(folder: Path) -> int | None:
    """Step of the run's last checkpoint, or None when it has none (``checkpoints/last`` names ``step_NNNNNNNN``)."""
    last = folder / "checkpoints" / LAST
    if not last.is_file():
        return None
    return int(last.read_text().strip().removeprefix("step_"))
