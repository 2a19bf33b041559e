"""What a training loop runs beside its updates: the held-out loss, and evaluating a checkpoint in simulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from robostack.data.sampler import SequenceSampler
from robostack.data.store import EpisodeStore
from robostack.train.data import to_tensors


@torch.no_grad()
def validation_loss(
    policy: Any, sampler: SequenceSampler, batch_size: int, device: torch.device, seed: int, batches: int = 4
) -> float:
    """The training loss (random crops and noise levels included) on held-out episodes, from a fixed seed; the
    caller's random streams are left as they were."""
    was_training = policy.training
    policy.train()
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    losses = [
        float(policy.compute_loss(to_tensors(sampler.random_batch(batch_size, rng), device))[0])
        for _ in range(batches)
    ]
    torch.set_rng_state(torch_state)
    policy.train(was_training)
    return float(np.mean(losses))


def default_task(store: EpisodeStore) -> str:
    """The simulated task the store was recorded on, or '' for data from elsewhere."""
    from robostack.sim.registry import task_names

    tasks = [t for t in store.info.tasks if t in task_names()]
    return tasks[0] if tasks else ""


def evaluate_checkpoint(ckpt: Path, task: str, episodes: int, workers: int, seed: int) -> dict[str, Any]:
    """Evaluate a saved policy folder in simulation; writes ``eval.json`` beside it and prints one line."""
    from robostack.eval.evaluate import evaluate

    result = evaluate(ckpt, task, episodes, workers, seed, progress=False)
    (ckpt / "eval.json").write_text(json.dumps(result.to_json(), indent=1))
    tqdm.write(
        f"step {ckpt.name[5:].lstrip('0')}: {task} success {100 * result.success_rate:.0f}% "
        f"({result.successes}/{result.episodes})"
    )
    return result.to_json()
