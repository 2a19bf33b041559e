"""Soundness checks for an episode store, and the one repair that is always safe: dropping an uncommitted tail."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zarr

from robostack.data.fs import WriterLock, list_partial_files
from robostack.data.schema import EPISODE_COLUMNS
from robostack.data.store import (
    EpisodeStore,
    commit_record_problems,
    data_keys,
    episode_ends_problem,
    refuse_if_commit_record_damaged,
)
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
    if not path.exists():
        return [Finding("error", f"{path}: no such file or directory")]
    try:
        store = EpisodeStore(path)
    except StoreError as exc:
        return [Finding("error", str(exc))]
    present = data_keys(store.group)
    out = [Finding("error", m) for m in commit_record_problems(store.group, store.episode_ends, present)]
    if episode_ends_problem(store.episode_ends):
        return out  # every other check measures against the episode ends; against these they would mislead
    if not present:
        out.append(Finding("error", "no arrays under data/"))
    if store.is_robostack:
        out += _spec_findings(store, present)
    tail = 0
    for key in present:
        arr = store.group["data/" + key]
        if arr.shape[0] < store.n_steps:
            continue  # reported with the commit record
        tail = max(tail, arr.shape[0] - store.n_steps)
        out += _chunk_findings(store, key, read_chunks)
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


def _spec_findings(store: EpisodeStore, present: list[str]) -> list[Finding]:
    """The arrays against the declared feature specs, and the episode table's shape."""
    out = []
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
    out += [
        Finding("error", f"data/{k}: not declared in the feature specs")
        for k in present
        if k not in store.info.features
    ]
    try:
        table = store.group["meta/episodes"]
        if table.shape[0] < store.n_episodes or table.shape[1:] != (len(EPISODE_COLUMNS),):
            out.append(
                Finding("error", f"meta/episodes has shape {table.shape} for {store.n_episodes} episodes")
            )
    except KeyError:
        out.append(Finding("error", "meta/episodes is missing"))
    return out


def _chunk_findings(store: EpisodeStore, key: str, read_chunks: bool) -> list[Finding]:
    """Chunk files that are missing (robostack stores write every chunk) or do not decode, in committed rows."""
    arr, n_steps = store.group["data/" + key], store.n_steps
    if store.is_robostack:
        missing = _chunk_files_present(arr, store.path / "data" / key, n_steps)
        if missing:
            return [Finding("error", f"data/{key}: chunk file(s) missing for time chunk(s) {missing[:5]}")]
    if read_chunks and n_steps:
        step = int(arr.chunks[0])
        for start in range(0, n_steps, step * 64):
            try:
                arr[start : min(n_steps, start + step * 64)]
            except Exception as exc:
                msg = f"data/{key}: unreadable chunk near row {start} ({type(exc).__name__}: {exc})"
                return [Finding("error", msg)]
    return []


def repair_store(path: str | os.PathLike[str], findings: list[Finding] | None = None) -> list[str]:
    """Drop the uncommitted tail and leftover temporary files; touch nothing committed. Returns what it did.

    Only a store whose commit record checks out against its arrays and its episode table is repaired: the
    tail is defined by that record, so trusting a damaged one would cut committed rows or keep garbage.
    Any other error is refused too (raises StoreError, nothing changed): --repair fixes what an interrupted
    writer leaves, and nothing else. ``findings``: a validation of the store just made (the CLI's), so its
    chunks are not all read a second time; the commit record is checked again under the lock either way.
    """
    path = Path(path)
    findings = validate_store(path) if findings is None else findings
    errors = [f.message for f in findings if f.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StoreError(
            f"{path}: refusing to repair: {errors[0]}{more}; --repair only drops an uncommitted tail past a "
            "verified commit record, so nothing was changed"
        )
    done: list[str] = []
    with WriterLock(path):
        refuse_if_commit_record_damaged(path, "repair")  # again, now that no writer can change it
        store = EpisodeStore(path)
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
