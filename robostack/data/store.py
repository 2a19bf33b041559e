"""The crash-safe zarr v3 episode store: one writer that commits whole episodes, any number of readers.

Commit protocol (why a kill -9 at any moment leaves a sound store):

1. An episode's rows are appended to every ``data/<key>`` array past the last committed end. Each file write
   is a temporary file plus a rename, so a chunk that also holds committed rows is replaced whole or not at all.
   Its per-episode metadata row goes to ``meta/episodes`` the same way (raw chunk, past the committed count).
2. The commit: the ``meta/episode_ends`` chunk that holds entry E is written (raw bytes, atomically), and only
   then the array's ``zarr.json`` is rewritten with shape E+1. Readers trust that shape, so they see episode E
   exactly when every byte of it is on disk. Before step 2 the rows are an *uncommitted tail* readers ignore.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.storage import LocalStore

from robostack.data.chunks import ChunkAppender
from robostack.data.fs import DurableLocalStore, WriterLock, atomic_write_bytes, fsync_dir
from robostack.data.schema import (
    EPISODE_COLUMNS,
    FORMAT_NAME,
    QUALITIES,
    SOURCES,
    FeatureSpec,
    StoreInfo,
    check_episode_arrays,
    chunk_rows,
)
from robostack.errors import SpecError, StoreError

ENDS_CHUNK = 4096  # episode_ends entries per chunk; the commit rewrites one such chunk (32 KiB)
ZARR_JSON = "zarr.json"
STAGING_NAME = ".robostack.creating"  # a store under construction
CREATING_MARKER = ".robostack.creating-marker"  # data/ and meta/ beside it are a killed creation's
OWN_ENTRIES = {".robostack.lock", STAGING_NAME, CREATING_MARKER}


def _open_group(path: Path, *, write: bool, fsync: bool = False) -> zarr.Group:
    if not (path / ZARR_JSON).is_file():
        if (path / ".zgroup").is_file():
            raise StoreError(
                f"{path}: zarr v2 store; convert it with 'robostack data import --from diffusion-policy'"
            )
        raise StoreError(f"{path}: not a zarr store (no zarr.json)")
    store = (
        DurableLocalStore(path, read_only=not write, fsync=fsync)
        if write
        else LocalStore(path, read_only=True)
    )
    try:
        return zarr.open_group(store=store, mode="r+" if write else "r")
    except Exception as exc:  # zarr raises many types for a damaged zarr.json
        raise StoreError(f"{path}: unreadable zarr metadata ({type(exc).__name__}: {exc})") from None


def _require_array(group: zarr.Group, key: str, path: Path) -> zarr.Array:
    try:
        node = group[key]
    except KeyError:
        raise StoreError(f"{path}: missing '{key}'") from None
    except Exception as exc:
        raise StoreError(f"{path}: '{key}' is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{path}: '{key}' is a group, expected an array")
    return node


def _read(arr: zarr.Array, sel: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(arr[sel])
    except Exception as exc:
        raise StoreError(f"unreadable chunk in '{what}' ({type(exc).__name__}: {exc})") from None


def data_keys(group: zarr.Group) -> list[str]:
    """All array paths under ``data/``, relative to it (``obs/state``, ``action`` ...)."""
    if "data" not in group:
        return []
    out: list[str] = []

    def walk(g: zarr.Group, prefix: str) -> None:
        for name, node in sorted(g.members()):
            if isinstance(node, zarr.Array):
                out.append(prefix + name)
            else:
                walk(node, prefix + name + "/")

    walk(group["data"], "")
    return out


def episode_ends_problem(ends: np.ndarray) -> str:
    """What is wrong with the episode ends on their own (shape, dtype, sign, order); empty when nothing is."""
    if ends.ndim != 1:
        return f"meta/episode_ends must be 1-D, has shape {ends.shape}"
    if not np.issubdtype(ends.dtype, np.integer):
        return f"meta/episode_ends has dtype {ends.dtype}, expected int64"
    if np.any(ends < 0):
        i = int(np.argmax(ends < 0))
        return f"meta/episode_ends[{i}] = {int(ends[i])} is negative"
    lengths = np.diff(np.concatenate([[0], ends]))
    if np.any(lengths <= 0):
        return f"meta/episode_ends is not strictly increasing (at episode {int(np.argmax(lengths <= 0))})"
    return ""


def commit_record_problems(group: zarr.Group, ends: np.ndarray, keys: list[str]) -> list[str]:
    """What is wrong with ``meta/episode_ends`` against the arrays it indexes and the episode table; [] if sound.

    Every writer (append, repair, merge) runs this before it touches a file: a damaged commit record would
    otherwise make it truncate committed rows (an end too small) or count unwritten rows as committed (too large).
    The episode table's ``length`` column is an independent copy of each episode's length, written with the
    same commit, so it catches an end that is wrong but still inside the arrays.
    """
    own = episode_ends_problem(ends)
    if own or ends.size == 0:
        return [own] if own else []
    ends = ends.astype(np.int64)
    lengths = np.diff(np.concatenate([[0], ends]))
    out = []
    n = int(ends[-1])
    for key in keys:
        try:
            rows = group["data/" + key].shape[0]
        except KeyError:
            continue  # a missing array is its own finding
        if rows < n:
            out.append(f"data/{key}: {rows} rows, but the commit record's last end is {n}")
    if "meta/episodes" in group:
        table = group["meta/episodes"]
        col = EPISODE_COLUMNS.index("length")
        if table.ndim != 2 or table.shape[0] < ends.size or table.shape[1] <= col:
            out.append(f"meta/episodes has shape {table.shape} for {ends.size} episodes")
        else:
            recorded = _read(table, (slice(0, ends.size), col), "meta/episodes").astype(np.int64)
            bad = np.flatnonzero(recorded != lengths)
            if bad.size:
                i = int(bad[0])
                out.append(
                    f"meta/episode_ends disagrees with the episode table at episode {i} "
                    f"(end {int(ends[i])} gives length {int(lengths[i])}, the table records {int(recorded[i])})"
                )
    return out


def refuse_if_commit_record_damaged(path: Path, action: str) -> None:
    """Raise one StoreError line when the commit record is unsound; reads only (no lock, no write)."""
    group = _open_group(path, write=False)
    ends_arr = _require_array(group, "meta/episode_ends", path)
    ends = _read(ends_arr, slice(None), "meta/episode_ends")
    keys = data_keys(group)
    problems = commit_record_problems(group, ends, keys)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(
            f"{path}: refusing to {action}: {problems[0]}{more}; nothing was changed "
            "('robostack data validate' lists every problem)"
        )


@dataclass
class EpisodeMeta:
    """Per-episode metadata as stored in ``meta/episode_*``."""

    index: int
    start: int
    end: int
    success: bool
    source: str
    task: str
    seed: int
    quality: str = "unknown"

    @property
    def length(self) -> int:
        return self.end - self.start


class EpisodeStore:
    """Read-only view of the committed episodes of a store. Safe to open while a writer appends."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.group = _open_group(self.path, write=False)
        ends_arr = _require_array(self.group, "meta/episode_ends", self.path)
        self.episode_ends = _read(ends_arr, slice(None), "meta/episode_ends").astype(np.int64)
        if self.episode_ends.ndim != 1:
            raise StoreError(
                f"{self.path}: meta/episode_ends must be 1-D, has shape {self.episode_ends.shape}"
            )
        attrs = dict(self.group.attrs)
        self.is_robostack = attrs.get("format") == FORMAT_NAME
        self.info = StoreInfo.from_attrs(attrs) if self.is_robostack else self._infer_info()
        self.attrs = attrs
        self._episode_table: np.ndarray | None = None

    def _infer_info(self) -> StoreInfo:
        features = {}
        for key in data_keys(self.group):
            arr = self.group["data/" + key]
            features[key] = FeatureSpec(dtype=str(arr.dtype), shape=tuple(arr.shape[1:]))
        return StoreInfo(control_rate_hz=0.0, features=features)

    # ------------------------------------------------------------------ episodes
    @property
    def n_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if self.n_episodes else 0

    @property
    def keys(self) -> list[str]:
        return list(self.info.features) if self.is_robostack else data_keys(self.group)

    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    def episode_field(self, name: str) -> np.ndarray:
        """One column of ``meta/episodes`` (committed entries only); defaults for stores without it."""
        n = self.n_episodes
        if name not in EPISODE_COLUMNS:
            raise StoreError(f"unknown episode field '{name}' (choose from {', '.join(EPISODE_COLUMNS)})")
        if self._episode_table is None:
            try:
                arr = self.group["meta/episodes"]
            except KeyError:
                arr = None
            if isinstance(arr, zarr.Array) and arr.ndim == 2 and arr.shape[0] >= n:
                self._episode_table = _read(arr, slice(0, n), "meta/episodes").astype(np.int64)
            else:
                table = np.zeros((n, len(EPISODE_COLUMNS)), np.int64)
                table[:, EPISODE_COLUMNS.index("source")] = SOURCES.index("imported")
                table[:, EPISODE_COLUMNS.index("seed")] = -1
                table[:, EPISODE_COLUMNS.index("length")] = np.diff(np.concatenate([[0], self.episode_ends]))
                self._episode_table = table
        return self._episode_table[:, EPISODE_COLUMNS.index(name)]

    def episodes(self) -> list[EpisodeMeta]:
        starts = self.episode_starts()
        succ = self.episode_field("success")
        src = self.episode_field("source")
        task = self.episode_field("task")
        seed = self.episode_field("seed")
        quality = self.episode_field("quality")
        tasks = self.info.tasks or [""]
        out = []
        for i in range(self.n_episodes):
            out.append(
                EpisodeMeta(
                    index=i,
                    start=int(starts[i]),
                    end=int(self.episode_ends[i]),
                    success=bool(succ[i]),
                    source=SOURCES[int(src[i])] if int(src[i]) < len(SOURCES) else "unknown",
                    task=tasks[int(task[i])] if 0 <= int(task[i]) < len(tasks) else "",
                    seed=int(seed[i]),
                    quality=QUALITIES[int(quality[i])]
                    if 0 <= int(quality[i]) < len(QUALITIES)
                    else "unknown",
                )
            )
        return out

    def array(self, key: str) -> zarr.Array:
        arr = _require_array(self.group, "data/" + key, self.path)
        if arr.shape[0] < self.n_steps:
            raise StoreError(
                f"{self.path}: data/{key} has {arr.shape[0]} rows but committed episodes need {self.n_steps}"
            )
        return arr

    def read(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of one key (committed rows only)."""
        stop = self.n_steps if stop is None else min(stop, self.n_steps)
        return _read(self.array(key), slice(start, stop), "data/" + key)

    def read_episode(self, index: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        if not 0 <= index < self.n_episodes:
            raise StoreError(f"{self.path}: episode {index} out of range (store has {self.n_episodes})")
        start = 0 if index == 0 else int(self.episode_ends[index - 1])
        end = int(self.episode_ends[index])
        return {k: self.read(k, start, end) for k in (keys or self.keys)}


class EpisodeWriter:
    """Appends whole episodes (or streams steps) to a store under the single-writer lock.

    Use ``EpisodeWriter.create(...)`` for a new store or ``EpisodeWriter.open(path)`` to append; both resume
    cleanly after a crash by dropping any uncommitted tail first.
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        # Checked before the lock too, so a refused open leaves every byte of the store (lock file included)
        # as it was; checked again under the lock, where no other writer can change it meanwhile.
        refuse_if_commit_record_damaged(self.path, "append")
        self._lock = WriterLock(self.path)
        self._lock.acquire()
        try:
            refuse_if_commit_record_damaged(self.path, "append")
            self.group = _open_group(self.path, write=True, fsync=fsync)
            attrs = dict(self.group.attrs)
            if attrs.get("format") != FORMAT_NAME:
                raise StoreError(
                    f"{self.path}: not a robostack store (import it with 'robostack data import')"
                )
            self.info = StoreInfo.from_attrs(attrs)
            self._ends_arr = _require_array(self.group, "meta/episode_ends", self.path)
            self._ends = np.asarray(self._ends_arr[:], dtype=np.int64)
            self._arrays = {k: _require_array(self.group, "data/" + k, self.path) for k in self.info.features}
            self._table_arr = _require_array(self.group, "meta/episodes", self.path)
            self._drop_uncommitted_tail()
            _drop_creation_leftovers(self.path)
            self._appenders = {
                k: ChunkAppender(a, self.path / "data" / k, self.n_steps, fsync=fsync)
                for k, a in self._arrays.items()
            }
        except BaseException:
            self._lock.release()
            raise
        self._stream: dict[str, list[np.ndarray]] | None = None
        self._stream_rows = 0
        self._stream_written = 0

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        info: StoreInfo,
        *,
        overwrite: bool = False,
        fsync: bool = False,
    ) -> EpisodeWriter:
        path = Path(path)
        if (path / ZARR_JSON).exists() and not overwrite:
            raise StoreError(f"{path}: store already exists (append to it, or pass overwrite)")
        if not info.features:
            raise SpecError("a store needs at least one feature")
        lock = WriterLock(path)
        with lock:
            if overwrite and (path / ZARR_JSON).exists():
                _remove_store_contents(path)
            _refuse_foreign_contents(path)
            # The store is built in a staging folder and its root zarr.json moved in last: a reader (or a kill)
            # in the middle of creation sees no store at all, never a store missing its commit record.
            staging = path / STAGING_NAME
            marker = path / CREATING_MARKER
            if staging.exists():
                shutil.rmtree(staging)
            marker.touch()
            group = zarr.open_group(store=DurableLocalStore(staging, fsync=fsync), mode="w")
            group.attrs.update(info.to_attrs())
            for key, spec in info.features.items():
                rows = chunk_rows(spec)
                group.create_array(
                    "data/" + key,
                    shape=(0, *spec.shape),
                    chunks=(rows, *spec.shape),
                    dtype=spec.dtype,
                    fill_value=0,
                    compressors=BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle"),
                    # Every chunk exists on disk, so a deleted chunk is detectable instead of reading as zeros.
                    config={"write_empty_chunks": True},
                )
            # Uncompressed raw little-endian bytes so the commit can write the chunk itself (see module doc).
            group.create_array(
                "meta/episode_ends",
                shape=(0,),
                chunks=(ENDS_CHUNK,),
                dtype="int64",
                fill_value=0,
                compressors=None,
                serializer=BytesCodec(endian="little"),
            )
            group.create_array(
                "meta/episodes",
                shape=(0, len(EPISODE_COLUMNS)),
                chunks=(ENDS_CHUNK, len(EPISODE_COLUMNS)),
                dtype="int64",
                fill_value=0,
                compressors=None,
                serializer=BytesCodec(endian="little"),
                attributes={
                    "columns": list(EPISODE_COLUMNS),
                    "sources": list(SOURCES),
                    "qualities": list(QUALITIES),
                },
            )
            for child in ("data", "meta"):
                if (path / child).exists():  # left by a creation killed after its first move (marker present)
                    shutil.rmtree(path / child)
                os.replace(staging / child, path / child)
            os.replace(staging / ZARR_JSON, path / ZARR_JSON)  # the store exists from here on
            if fsync:
                fsync_dir(path)
            marker.unlink()
            shutil.rmtree(staging)
        return cls(path, fsync=fsync)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, fsync: bool = False) -> EpisodeWriter:
        return cls(Path(path), fsync=fsync)

    # ------------------------------------------------------------------ state
    @property
    def n_episodes(self) -> int:
        return int(self._ends.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if self._ends.size else 0

    def _drop_uncommitted_tail(self) -> None:
        """Shrink every array to the committed size: the exact Diffusion Policy layout again."""
        n, e = self.n_steps, self.n_episodes
        for arr in self._arrays.values():
            if arr.shape[0] != n:
                arr.resize((n, *arr.shape[1:]))
        if self._table_arr.shape[0] != e:
            self._table_arr.resize((e, len(EPISODE_COLUMNS)))
        self._table = np.asarray(self._table_arr[:e], dtype=np.int64).reshape(e, len(EPISODE_COLUMNS))

    # ------------------------------------------------------------------ writing
    def add_episode(
        self,
        data: Mapping[str, np.ndarray],
        *,
        success: bool = False,
        source: str = "sim",
        task: str = "",
        seed: int = -1,
        quality: str = "unknown",
    ) -> int:
        """Append and commit one whole episode; returns its index."""
        if self._stream is not None:
            raise StoreError("an episode is being streamed; end or discard it first")
        arrays = {k: np.asarray(v) for k, v in data.items()}
        length = check_episode_arrays(arrays, self.info.features)
        start = self.n_steps
        self._write_rows(arrays, start)
        return self._commit(
            start + length, success=success, source=source, task=task, seed=seed, quality=quality
        )

    def begin_episode(self) -> None:
        if self._stream is not None:
            raise StoreError("begin_episode called twice without end_episode")
        self._stream = {k: [] for k in self.info.features}
        self._stream_rows = 0
        self._stream_written = 0

    def add_step(self, step: Mapping[str, Any], flush_rows: int | None = None) -> None:
        """Buffer one step; full time chunks are written as they fill so long episodes never sit in RAM."""
        if self._stream is None:
            raise StoreError("add_step before begin_episode")
        for key, spec in self.info.features.items():
            if key not in step:
                raise SpecError(f"step is missing key '{key}'")
            v = np.asarray(step[key])
            if v.shape != spec.shape:
                raise SpecError(f"key '{key}': step shape {v.shape} != declared {spec.shape}")
            self._stream[key].append(v)
        self._stream_rows += 1
        rows = flush_rows or min(chunk_rows(s) for s in self.info.features.values())
        if self._stream_rows - self._stream_written >= rows:
            self._flush_stream()

    def _flush_stream(self) -> None:
        assert self._stream is not None
        pending = self._stream_rows - self._stream_written
        if pending <= 0:
            return
        arrays = {k: np.stack(v) for k, v in self._stream.items()}
        self._write_rows(arrays, self.n_steps + self._stream_written)
        self._stream_written = self._stream_rows
        for v in self._stream.values():
            v.clear()  # written rows no longer needed in RAM

    def end_episode(
        self,
        *,
        success: bool = False,
        source: str = "sim",
        task: str = "",
        seed: int = -1,
        quality: str = "unknown",
    ) -> int:
        if self._stream is None:
            raise StoreError("end_episode without begin_episode")
        if self._stream_rows == 0:
            raise SpecError("episode has no steps")
        self._flush_stream()
        end = self.n_steps + self._stream_rows
        self._stream = None
        return self._commit(end, success=success, source=source, task=task, seed=seed, quality=quality)

    def discard_episode(self) -> None:
        """Forget the streamed episode; its written rows stay an uncommitted tail until the next write."""
        self._stream = None
        self._drop_uncommitted_tail()

    def _write_rows(self, arrays: Mapping[str, np.ndarray], start: int) -> None:
        """Write rows [start, start+len) of every key, all keys concurrently.

        Arrays grow by capacity (x1.5) rather than per episode: rows past the committed end are an uncommitted
        tail that readers ignore, and close() trims it, so fewer metadata rewrites cost nothing in safety.
        """
        length = next(iter(arrays.values())).shape[0]
        need = start + length
        for key, arr in self._arrays.items():
            spec = self.info.features[key]
            if arr.shape[0] < need:
                step = arr.chunks[0]
                cap = max(need, int(arr.shape[0] * 1.5))
                cap = -(-cap // step) * step
                arr.resize((cap, *spec.shape))
            self._appenders[key].write(np.asarray(arrays[key], dtype=spec.dtype), start)

    def _commit(self, end: int, *, success: bool, source: str, task: str, seed: int, quality: str) -> int:
        if source not in SOURCES:
            raise SpecError(f"unknown episode source '{source}' (choose from {', '.join(SOURCES)})")
        if quality not in QUALITIES:
            raise SpecError(f"unknown episode quality '{quality}' (choose from {', '.join(QUALITIES)})")
        e = self.n_episodes
        if task not in self.info.tasks:
            self.info.tasks.append(task)
            self.group.attrs["tasks"] = list(self.info.tasks)
        values = {
            "success": int(bool(success)),
            "source": SOURCES.index(source),
            "task": self.info.tasks.index(task),
            "seed": int(seed),
            "length": end - self.n_steps,
            "quality": QUALITIES.index(quality),
        }
        # The metadata row: raw chunk bytes. The table's shape runs ahead in whole chunks (readers take
        # episode_ends' length), so a commit rewrites no zarr.json but the one at the commit point.
        if self._table_arr.shape[0] < e + 1:
            self._table_arr.resize((-(-(e + 1) // ENDS_CHUNK) * ENDS_CHUNK, len(EPISODE_COLUMNS)))
        self._table = np.vstack([self._table, np.array([[values[c] for c in EPISODE_COLUMNS]], np.int64)])
        self._write_raw_chunk("episodes", self._table, e)
        new_ends = np.append(self._ends, np.int64(end))
        self._write_raw_chunk("episode_ends", new_ends, e)
        # The commit point: zarr.json with shape e+1 replaces the old one atomically.
        self._ends_arr.resize((e + 1,))
        if self.fsync:
            fsync_dir(self.path / "meta" / "episode_ends")
        self._ends = new_ends
        return e

    def _write_raw_chunk(self, name: str, values: np.ndarray, index: int) -> None:
        """Write the uncompressed chunk of ``meta/<name>`` holding entry ``index`` (zarr v3 'bytes' codec)."""
        c = index // ENDS_CHUNK
        part = values[c * ENDS_CHUNK :]
        chunk = np.zeros((ENDS_CHUNK, *part.shape[1:]), dtype=part.dtype.newbyteorder("<"))
        chunk[: part.shape[0]] = part
        key = "/".join(["c", str(c), *("0" for _ in part.shape[1:])])
        atomic_write_bytes(self.path / "meta" / name / key, chunk.tobytes(), fsync=self.fsync)

    # ------------------------------------------------------------------ misc
    def update_attrs(self, **attrs: Any) -> None:
        for k, v in attrs.items():
            self.group.attrs[k] = json.loads(json.dumps(v))

    def close(self) -> None:
        """Trim the capacity tail and fix the per-episode arrays' shapes, then release the lock."""
        try:
            self._stream = None
            self._drop_uncommitted_tail()
        finally:
            self._lock.release()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_creation_leftovers(path: Path) -> None:
    """A creation killed after its root zarr.json landed leaves the (empty) staging folder and the marker."""
    if (path / STAGING_NAME).exists():
        shutil.rmtree(path / STAGING_NAME)
    (path / CREATING_MARKER).unlink(missing_ok=True)


def _refuse_foreign_contents(path: Path) -> None:
    """Creating a store never deletes files it did not write: a non-empty folder that is not a store is refused."""
    if (path / ZARR_JSON).exists():
        return
    ours = set(OWN_ENTRIES)
    if (path / CREATING_MARKER).exists():
        ours |= {"data", "meta"}
    foreign = sorted(c.name for c in path.iterdir() if c.name not in ours)
    if foreign:
        raise StoreError(
            f"{path}: folder is not empty and not a store ({', '.join(foreign[:3])}); choose a new path"
        )


def _remove_store_contents(path: Path) -> None:
    for child in path.iterdir():
        if child.name == ".robostack.lock":
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
