"""``robostack data merge``: concatenate stores into a new store.

Stores of one task written by different tools hold different keys (a teleop session adds ``policy_action`` and
``human_action``, DART demos ``executed_action``, the ROS recorder no ``sim_state``). ``keys='shared'`` (the default)
keeps the keys every input has and names the ones left out; ``keys='fill'`` keeps every key and fills the rows of
stores without it: ``policy_action``, ``human_action`` and ``executed_action`` with the executed ``action`` (what
was done is what the actor commanded), ``is_intervention`` with False, ``imitate`` with True, anything else with
zeros. A key two stores hold with different shapes or dtypes is always refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robostack.data.schema import IMITATE_KEY, FeatureSpec, StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter, refuse_if_commit_record_damaged
from robostack.errors import StoreError
from robostack.utils.provenance import provenance

KEY_POLICIES = ("shared", "fill")
FILLED_FROM_ACTION = ("policy_action", "human_action", "executed_action")


def _fill(key: str, spec: FeatureSpec, data: dict[str, np.ndarray], length: int) -> np.ndarray:
    if key in FILLED_FROM_ACTION and "action" in data and data["action"].shape[1:] == tuple(spec.shape):
        return data["action"].astype(spec.dtype)
    if key == IMITATE_KEY:
        return np.ones((length, *spec.shape), bool)
    return np.zeros((length, *spec.shape), spec.dtype)


def merge_stores(
    inputs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    progress: bool = True,
    keys: str = "shared",
) -> tuple[int, list[str]]:
    """Copy every committed episode of ``inputs`` (in order) into a new store; returns the episode count and one
    line per key that was left out or filled."""
    if keys not in KEY_POLICIES:
        raise StoreError(f"--keys must be one of {', '.join(KEY_POLICIES)}, got '{keys}'")
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
        for k in [k for k in first.keys if k in s.keys]:  # in order: the same message every run
            a, b = first.info.features[k], s.info.features[k]
            if (a.dtype, a.shape) != (b.dtype, b.shape):
                raise StoreError(
                    f"{s.path}: key '{k}' is {b.dtype}{b.shape}, {first.path} has {a.dtype}{a.shape}"
                )
        if s.info.control_rate_hz != first.info.control_rate_hz:
            raise StoreError(
                f"{s.path}: control rate {s.info.control_rate_hz} Hz differs from {first.info.control_rate_hz} Hz"
            )
    specs = {}
    for s in stores:
        for k in s.keys:
            specs.setdefault(k, s.info.features[k])
    shared = [k for k in specs if all(k in s.keys for s in stores)]
    kept = shared if keys == "shared" else list(specs)
    notes = []
    for k in specs:
        missing = [str(s.path) for s in stores if k not in s.keys]
        if missing:
            what = "left out (not in" if keys == "shared" else "filled (see 'data merge --help') for"
            notes.append(f"key '{k}' {what} {', '.join(missing)}" + (")" if keys == "shared" else ""))
    if not any(k == "action" for k in kept):
        raise StoreError("the inputs share no 'action' key: nothing to merge")
    info = StoreInfo(
        control_rate_hz=first.info.control_rate_hz,
        features={k: specs[k] for k in kept},
        robot=first.info.robot,
        task_description=first.info.task_description,
        provenance=provenance({"inputs": [str(s.path) for s in stores], "keys": keys, "notes": notes}),
        extra={"merged_from": [{"path": str(s.path), "provenance": s.info.provenance} for s in stores]},
    )
    total = sum(s.n_episodes for s in stores)
    with (
        EpisodeWriter.create(out, info) as w,
        tqdm(total=total, desc="merge", unit="ep", disable=None if progress else True) as bar,
    ):
        for s in stores:
            for ep in s.episodes():
                data = s.read_episode(ep.index, [k for k in kept if k in s.keys])
                for k in kept:
                    if k not in data:
                        data[k] = _fill(k, specs[k], data, ep.length)
                w.add_episode(
                    data, success=ep.success, source=ep.source, task=ep.task, seed=ep.seed, quality=ep.quality
                )
                bar.update(1)
    return total, notes
