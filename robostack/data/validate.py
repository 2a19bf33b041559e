"""Soundness checks for an episode store, and the one repair that is always safe: dropping an uncommitted tail."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from robostack.data.fs import WriterLock, list_partial_files
from robostack.data.schema import EPISODE_COLUMNS
from robostack.data.store import EpisodeStore, data_keys
from robostack.errors import StoreError


@dataclass(frozen=True)
class Finding:
    """One line of a validation report. ``error`` makes the store unsound; a ``note`` does not."""

    severity: str  # "error" | "note"
    message: str


def _chunk_files_present(arr: zarr.Array, array_dir: Path, n_rows: int) -> list[int]:
    """Indices of time chunks that should hold committed rows but have no file (robostack writes every chunk)."""
    rows = int(arr.chunks[0])
    tail = "/".join("0" for _ in arr.shape[1:])
    missing = []
    for c in range(-(-n_rows // rows)):
        key = f"c/{c}" + (f"/{tail}" if tail else "")
        if not (array_dir / key).is_file():
            missing.append(c)
    return missing


def validate_store(path: str | os.PathLike[str], *, read_chunks: bool = True) -> list[Finding]:
    """Every problem found in the store; an empty list, or notes only, means it is sound."""
    path = Path(path)
    out: list[Finding] = []
    if not path.exists():
        return [Finding("error", f"{path}: no such file or directory")]
    try:
        store = EpisodeStore(path)
    except StoreError as exc:
        return [Finding("error", str(exc))]
    ends = store.episode_ends
    if not np.issubdtype(ends.dtype, np.integer):
        out.append(Finding("error", f"meta/episode_ends has dtype {ends.dtype}, expected int64"))
    if ends.size and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
        bad = int(np.argmax(np.diff(np.concatenate([[0], ends])) <= 0))
        out.append(Finding("error", f"meta/episode_ends is not strictly increasing (at episode {bad})"))
        return out
    n_steps = store.n_steps
    present = data_keys(store.group)
    if not present:
        out.append(Finding("error", "no arrays under data/"))
    if store.is_robostack:
        for key, spec in store.info.features.items():
            if key not in present:
                out.append(Finding("error", f"data/{key}: declared in the feature specs but missing"))
                continue
            arr = store.group["data/" + key]
            if str(arr.dtype) != spec.dtype:
                out.append(Finding("error", f"data/{key}: dtype {arr.dtype}, the spec says {spec.dtype}"))
            if tuple(arr.shape[1:]) != spec.shape:
                out.append(
                    Finding("error", f"data/{key}: per-step shape {tuple(arr.shape[1:])}, spec {spec.shape}")
                )
        for key in present:
            if key not in store.info.features:
                out.append(Finding("error", f"data/{key}: not declared in the feature specs"))
        try:
            table = store.group["meta/episodes"]
            if table.shape[0] < store.n_episodes or table.shape[1:] != (len(EPISODE_COLUMNS),):
                out.append(
                    Finding("error", f"meta/episodes has shape {table.shape} for {store.n_episodes} episodes")
                )
        except KeyError:
            out.append(Finding("error", "meta/episodes is missing"))
    tail = 0
    for key in present:
        arr = store.group["data/" + key]
        if arr.shape[0] < n_steps:
            out.append(
                Finding("error", f"data/{key}: {arr.shape[0]} rows, committed episodes need {n_steps}")
            )
            continue
        tail = max(tail, arr.shape[0] - n_steps)
        if store.is_robostack:
            missing = _chunk_files_present(arr, path / "data" / key, n_steps)
            if missing:
                out.append(
                    Finding("error", f"data/{key}: chunk file(s) missing for time chunk(s) {missing[:5]}")
                )
                continue
        if read_chunks and n_steps:
            step = int(arr.chunks[0])
            for start in range(0, n_steps, step * 64):
                try:
                    arr[start : min(n_steps, start + step * 64)]
                except Exception as exc:
                    out.append(
                        Finding(
                            "error",
                            f"data/{key}: unreadable chunk near row {start} ({type(exc).__name__}: {exc})",
                        )
                    )
                    break
    if tail:
        out.append(
            Finding(
                "note",
                f"{tail} uncommitted row(s) past the last episode (interrupted or active writer); "
                "readers ignore them, --repair drops them",
            )
        )
    partial = list_partial_files(path)
    if partial:
        out.append(Finding("note", f"{len(partial)} leftover temporary file(s) from an interrupted write"))
    return out


def repair_store(path: str | os.PathLike[str]) -> list[str]:
    """Drop the uncommitted tail and leftover temporary files; touch nothing committed. Returns what it did."""
    path = Path(path)
    store = EpisodeStore(path)  # raises a clear StoreError on a store that cannot be opened
    done: list[str] = []
    with WriterLock(path):
        group = zarr.open_group(store=zarr.storage.LocalStore(path), mode="r+")
        n, e = store.n_steps, store.n_episodes
        for key in data_keys(group):
            arr = group["data/" + key]
            if arr.shape[0] > n:
                done.append(f"data/{key}: dropped {arr.shape[0] - n} uncommitted row(s)")
                arr.resize((n, *arr.shape[1:]))
        if "meta/episodes" in group and group["meta/episodes"].shape[0] > e:
            table = group["meta/episodes"]
            table.resize((e, *table.shape[1:]))
        for p in list_partial_files(path):
            p.unlink()
            done.append(f"removed temporary file {p.relative_to(path)}")
    return done
