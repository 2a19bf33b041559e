"""``robostack data merge``: concatenate stores with identical feature specs into a new store."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from robostack.data.schema import StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter, refuse_if_commit_record_damaged
from robostack.errors import StoreError
from robostack.utils.provenance import provenance


def merge_stores(
    inputs: list[str | os.PathLike[str]], out: str | os.PathLike[str], progress: bool = True
) -> int:
    """Copy every committed episode of ``inputs`` (in order) into a new store; returns the episode count."""
    if len(inputs) < 1:
        raise StoreError("merge needs at least one input store")
    out = Path(out)
    if (out / "zarr.json").exists():
        raise StoreError(f"{out}: already exists; merge writes a new store")
    for p in inputs:
        refuse_if_commit_record_damaged(Path(p), "merge it")
    stores = [EpisodeStore(p) for p in inputs]
    first = stores[0]
    for s in stores[1:]:
        if set(s.keys) != set(first.keys):
            diff = sorted(set(s.keys) ^ set(first.keys))
            raise StoreError(f"{s.path}: keys differ from {first.path} ({', '.join(diff)})")
        for k in first.keys:
            a, b = first.info.features[k], s.info.features[k]
            if (a.dtype, a.shape) != (b.dtype, b.shape):
                raise StoreError(
                    f"{s.path}: key '{k}' is {b.dtype}{b.shape}, {first.path} has {a.dtype}{a.shape}"
                )
        if s.info.control_rate_hz != first.info.control_rate_hz:
            raise StoreError(
                f"{s.path}: control rate {s.info.control_rate_hz} Hz differs from {first.info.control_rate_hz} Hz"
            )
    info = StoreInfo(
        control_rate_hz=first.info.control_rate_hz,
        features=dict(first.info.features),
        robot=first.info.robot,
        task_description=first.info.task_description,
        provenance=provenance({"inputs": [str(s.path) for s in stores]}),
        extra={"merged_from": [{"path": str(s.path), "provenance": s.info.provenance} for s in stores]},
    )
    total = sum(s.n_episodes for s in stores)
    with (
        EpisodeWriter.create(out, info) as w,
        tqdm(total=total, desc="merge", unit="ep", disable=None if progress else True) as bar,
    ):
        for s in stores:
            for ep in s.episodes():
                data = s.read_episode(ep.index)
                w.add_episode(
                    data, success=ep.success, source=ep.source, task=ep.task, seed=ep.seed, quality=ep.quality
                )
                bar.update(1)
    return total
