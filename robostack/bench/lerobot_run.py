"""Train and evaluate LeRobot's DiffusionPolicy exactly like a robostack run: same windows, optimiser, schedule,
steps and evaluation seeds, so success, training throughput and chunk latency compare like for like."""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from robostack.bench.results import RunResult
from robostack.compare.lerobot_diffusion import LEROBOT, LeRobotDiffusion
from robostack.data.buffer import EpisodeFilter
from robostack.data.sampler import SequenceSampler
from robostack.eval.evaluate import evaluate_in_process
from robostack.eval.seeds import first_seed
from robostack.train.config import TrainConfig
from robostack.train.data import load_store_for_policy, to_tensors
from robostack.train.optim import optimizer_step, warmup_cosine
from robostack.utils.generators import drain, pause_point


def train_lerobot(
    cfg: TrainConfig, data: Path, progress: bool = True, timeline: list[tuple[int, float]] | None = None
) -> tuple[LeRobotDiffusion, float]:
    """LeRobot's DiffusionPolicy trained on ``data`` with ``cfg``'s windows, optimiser, schedule and steps; returns
    the model and the wall time of its optimisation loop (``timeline`` collects (steps done, seconds) every
    ``cfg.log_every`` steps, like the ``train_s`` of a robostack run's metrics)."""
    return drain(iter_train_lerobot(cfg, data, progress, timeline))


def iter_train_lerobot(
    cfg: TrainConfig, path: Path, progress: bool = True, timeline: list[tuple[int, float]] | None = None
) -> Generator[int, None, tuple[LeRobotDiffusion, float]]:
    """``train_lerobot`` one step at a time, like ``iter_train``: yields the steps done, and the time it spends
    suspended at a ``yield`` is not counted as training time."""
    torch.manual_seed(cfg.seed)
    data = load_store_for_policy(
        str(path), None, EpisodeFilter(success=True if cfg.data.success_only else None)
    )
    model = LeRobotDiffusion(data.spec, data.stats, cfg.policy)
    sampler = SequenceSampler(
        data.buffer,
        horizon=model.config.horizon,
        n_obs_steps=model.config.n_obs_steps,
        n_action_steps=model.config.n_action_steps,
        obs_keys=data.obs_keys,
    )
    # LeRobot trains with torch's own AdamW (per-parameter step counters); the rest is robostack's recipe
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay
    )
    sched = warmup_cosine(opt, cfg.optim.warmup_steps, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    model.train()
    t0, paused = time.perf_counter(), 0.0
    for step in tqdm(range(cfg.steps), desc="train lerobot", disable=None if progress else True):
        batch = to_tensors(sampler.random_batch(cfg.optim.batch_size, rng), torch.device("cpu"))
        optimizer_step(model.compute_loss(batch), opt, sched)
        if timeline is not None and (step + 1) % cfg.log_every == 0:
            timeline.append((step + 1, time.perf_counter() - t0 - paused))
        paused += yield from pause_point(step + 1)
    return model, time.perf_counter() - t0 - paused


def eval_lerobot(
    run: dict[str, Any],
    cfg: TrainConfig,
    folder: Path,
    ev: dict[str, Any],
    model: LeRobotDiffusion,
    train_s: float,
    timeline: list[tuple[int, float]] | None = None,
) -> RunResult:
    """Save the trained LeRobot model in the run folder (with ``timeline`` as metrics.jsonl: the ``step`` and
    ``train_s`` records a robostack run logs, to compare their pace step by step), evaluate it like a robostack run
    and return its row."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.policy.state_dict(), folder / "lerobot_diffusion.pt")
    if timeline:
        lines = (json.dumps({"step": step, "train_s": seconds}) + "\n" for step, seconds in timeline)
        (folder / "metrics.jsonl").write_text("".join(lines))
    model.eval()
    if ev.get("n_action_steps"):
        model.config.n_action_steps = int(ev["n_action_steps"])  # LeRobot sizes its action queue on reset()
    if ev.get("num_steps"):
        model.policy.diffusion.num_inference_steps = int(ev["num_steps"])  # read by every conditional_sample
    result = evaluate_in_process(
        model,
        "lerobot DiffusionPolicy",
        ev["task"],
        ev.get("episodes", 200),
        first_seed(ev, ev.get("episodes", 200)),
    )
    print(result.table())
    samples_per_s = cfg.steps * cfg.optim.batch_size / train_s
    return RunResult.from_eval(run, LEROBOT, cfg.steps, train_s, samples_per_s, result)
