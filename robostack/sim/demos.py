"""``robostack sim demos``: scripted demonstrations of a task, written episode by episode into a store."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robostack.data.schema import StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import StoreError
from robostack.sim.parallel import generate_episodes
from robostack.sim.quality import DART_NOISE, LABELLED_TIERS, MASKED_TIERS, TIERS
from robostack.sim.registry import make_task
from robostack.sim.rollout import episode_features
from robostack.utils.provenance import provenance
from robostack.utils.table import format_table


@dataclass
class DemoConfig:
    """One demo-generation run (saved in the store's provenance)."""

    task: str = "push"
    """Registered task name (``robostack sim list``)."""
    episodes: int = 100
    """Episodes to generate (successful or not: every episode is kept, with its success flag)."""
    quality: str = "expert"
    """expert | noisy | random | dart (expert labels, noisy execution; DART) | recovery (the expert knocked off
    course by short random bursts, which are flagged not to imitate) | mixed (a per-episode draw of expert, noisy
    and random)."""
    out: str = "demos.zarr"
    """Store to create, or to append to when it exists."""
    workers: int = 1
    """Simulator processes."""
    seed: int | None = None
    """First episode seed (episode i uses seed+i); default: after the largest seed already in the store."""
    dart_noise: float = DART_NOISE
    """Standard deviation of the executed noise of ``dart`` demonstrations (normalised action units)."""
    cameras: tuple[str, ...] = ()
    """Cameras to record as ``obs/image_<camera>`` (robosuite tasks)."""
    image_size: int = 84
    fsync: bool = False
    """fsync every file before commit (survives power loss, not only a killed process)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise StoreError("--episodes must be at least 1")
        if self.quality not in TIERS:
            raise StoreError(f"unknown quality '{self.quality}' (choose from {', '.join(TIERS)})")
        if self.workers < 1:
            raise StoreError("--workers must be at least 1")
        if not 0.0 <= self.dart_noise <= 1.0:
            raise StoreError(f"--dart-noise must be in [0, 1], got {self.dart_noise}")


@dataclass
class DemoSummary:
    rows: list[tuple[str, int, float, float]]
    steps: int
    seconds: float
    store_episodes: int

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(self.seconds, 1e-9)

    def table(self) -> str:
        body = [(t, n, f"{100 * s:.1f}%", f"{m:.1f}") for t, n, s, m in self.rows]
        body.append(("all", sum(r[1] for r in self.rows), "", ""))
        text = format_table(["tier", "episodes", "success", "mean length"], body)
        return text + (
            f"\n{self.steps} steps in {self.seconds:.1f} s = {self.steps_per_s:,.0f} env steps/s;"
            f" store now holds {self.store_episodes} episodes"
        )


def open_task_store(
    out: str | Path,
    task: str,
    feats: dict,
    config: dict,
    task_kwargs: dict | None = None,
    fsync: bool = False,
) -> tuple[EpisodeWriter, int]:
    """A writer on ``out`` for episodes of ``task`` with features ``feats``, and the first seed not yet used.

    An existing store must hold exactly these features at the task's control rate (appending never mixes tasks);
    a new one records ``config`` in its provenance."""
    probe = make_task(task, **(task_kwargs or {}))
    spec = probe.task_spec
    probe.close()
    out = Path(out)
    if (out / "zarr.json").exists():
        existing = EpisodeStore(out)
        if existing.info.features != feats:
            diff = sorted(set(existing.info.features) ^ set(feats)) or [
                k for k in feats if existing.info.features.get(k) != feats[k]
            ]
            raise StoreError(
                f"{out}: holds different features than task '{task}' records ({', '.join(diff)})"
            )
        if existing.info.control_rate_hz != spec.control_rate_hz:
            raise StoreError(
                f"{out}: control rate {existing.info.control_rate_hz} Hz, task '{task}' runs at "
                f"{spec.control_rate_hz} Hz"
            )
        seeds = existing.episode_field("seed")
        next_seed = int(seeds.max()) + 1 if seeds.size else 0
        return EpisodeWriter.open(out, fsync=fsync), next_seed
    info = StoreInfo(
        control_rate_hz=spec.control_rate_hz,
        features=feats,
        robot=spec.robot,
        task_description=spec.description,
        provenance=provenance(config),
        extra={"task_spec": spec.to_json()},
    )
    return EpisodeWriter.create(out, info, fsync=fsync), 0


def _open_or_create(cfg: DemoConfig, kwargs: dict) -> tuple[EpisodeWriter, int]:
    probe = make_task(cfg.task, **kwargs)
    feats = episode_features(
        probe, labelled=cfg.quality in LABELLED_TIERS, masked=cfg.quality in MASKED_TIERS
    )
    probe.close()
    return open_task_store(cfg.out, cfg.task, feats, asdict(cfg), kwargs, cfg.fsync)


def generate_demos(cfg: DemoConfig, progress: bool = True) -> DemoSummary:
    kwargs = {"cameras": tuple(cfg.cameras), "image_size": cfg.image_size} if cfg.cameras else {}
    writer, next_seed = _open_or_create(cfg, kwargs)
    first = next_seed if cfg.seed is None else cfg.seed
    seeds = list(range(first, first + cfg.episodes))
    stats: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    steps = 0
    t0 = time.perf_counter()
    try:
        bar = tqdm(
            total=cfg.episodes,
            desc=f"{cfg.task} demos",
            unit="ep",
            disable=None if progress else True,
            leave=False,
        )
        for ep in generate_episodes(
            cfg.task, seeds, cfg.quality, cfg.workers, kwargs, dart_noise=cfg.dart_noise
        ):
            writer.add_episode(
                ep.data, success=ep.success, source="sim", task=cfg.task, seed=ep.seed, quality=ep.tier
            )
            stats[ep.tier].append((ep.success, ep.length))
            steps += ep.length
            bar.update(1)
            done = sum(len(v) for v in stats.values())
            bar.set_postfix(success=f"{np.mean([s for v in stats.values() for s, _ in v]):.0%}", n=done)
        bar.close()
    finally:
        writer.close()
    seconds = time.perf_counter() - t0
    rows = [
        (tier, len(v), float(np.mean([s for s, _ in v])), float(np.mean([n for _, n in v])))
        for tier, v in sorted(stats.items())
    ]
    return DemoSummary(
        rows=rows, steps=steps, seconds=seconds, store_episodes=EpisodeStore(cfg.out).n_episodes
    )
