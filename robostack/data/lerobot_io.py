"""LeRobot v3.0 datasets <-> robostack stores, through LeRobot's own library (``LeRobotDataset``).

Mapping (both ways):

=====================================  ===========================================================
LeRobot                                store
=====================================  ===========================================================
``observation.state``                  ``obs/state``
``observation.environment_state``      ``obs/environment_state``
``observation.images.<cam>`` (video    ``obs/image_<cam>`` uint8 HxWx3 (decoded frame-exact)
or image)
``observation.<name>`` (vectors)       ``obs/<name>``
``action``                             ``action``
``next.reward``                        ``reward`` (float32 per step)
``next.done``                          ``terminated``; ``truncated`` is True on an episode's last step
                                       when ``next.done`` is not (exported back from ``terminated``)
``next.success``                       ``success`` per step; the episode's success is any of them
``timestamp``                          ``timestamp``
``episode_index``, ``frame_index``     episode boundaries
tasks (strings)                        each episode's task
``fps``                                control rate
any other numeric feature              the same key; unnamed (1,) features are per-step scalars
=====================================  ===========================================================

Feature names (LeRobot's ``names``, a list or a dict of lists) become the store's feature names. Features that
cannot map (strings, nested structures) are named in one warning line, never dropped silently. Exported episodes
carry the store's other keys (``sim_state``, ``is_intervention``, ``policy_action``...) under their own names, so a
store -> LeRobot -> store round trip keeps them; without a per-step ``success`` key, ``next.success`` is True on the
last step of successful episodes.

Video: LeRobot 0.4.4 decodes with torchcodec, or falls back to PyAV through ``torchvision.io.VideoReader``, which
the pinned torchvision no longer has; frames are therefore decoded here with PyAV directly (frame index =
round(timestamp * fps) within the episode's file). Export encodes with LeRobot's encoder (AV1 through PyAV):
lossy, so exported images equal the store's within the codec's error, numeric arrays exactly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import RobostackError, StoreError
from robostack.utils.provenance import provenance

STRUCTURAL = ("episode_index", "frame_index", "index", "task_index")


def _lerobot() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local datasets only: never reach for the hub
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as exc:
        raise RobostackError(
            f"LeRobot is not installed ({exc}); install it (scripts/setup_env.sh does) to read or write its datasets"
        ) from None
    return LeRobotDataset


def store_key(lerobot_key: str) -> str | None:
    if lerobot_key.startswith("observation.images."):
        return "obs/image_" + lerobot_key.removeprefix("observation.images.")
    if lerobot_key == "observation.image":
        return "obs/image"
    if lerobot_key.startswith("observation."):
        return "obs/" + lerobot_key.removeprefix("observation.")
    return {"next.reward": "reward", "next.done": "terminated", "next.success": "success"}.get(
        lerobot_key, lerobot_key
    )


def lerobot_key(key: str) -> str:
    if key.startswith("obs/image_"):
        return "observation.images." + key.removeprefix("obs/image_")
    if key == "obs/image":
        return "observation.image"
    if key.startswith("obs/"):
        return "observation." + key.removeprefix("obs/")
    return {"reward": "next.reward", "terminated": "next.done", "success": "next.success"}.get(key, key)


def _names(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, dict):
        flat = [n for v in raw.values() for n in (v if isinstance(v, list) else [v])]
        return tuple(map(str, flat)) or None
    if isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw):
        return tuple(raw)
    return None


def _arrow_column(table: Any, name: str) -> np.ndarray:
    """A column as one numpy array (fixed-size lists of any depth flattened to trailing dimensions)."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    shape: list[int] = [len(col)]
    while pa.types.is_fixed_size_list(col.type):
        shape.append(col.type.list_size)
        col = col.flatten()
    return np.asarray(col.to_numpy(zero_copy_only=False)).reshape(shape)


def _video_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            yield float(frame.pts * stream.time_base), frame.to_ndarray(format="rgb24")


class _VideoReader:
    """Frames of one video feature, episode by episode, decoding each mp4 file once in order."""

    def __init__(self, root: Path, key: str, meta: Any) -> None:
        self.root, self.key, self.meta = root, key, meta
        self.fps = float(meta.fps)
        self._file: tuple[int, int] | None = None
        self._frames: Iterator[tuple[float, np.ndarray]] | None = None
        self._next: tuple[int, np.ndarray] | None = None

    def episode(self, ep: dict[str, Any], length: int) -> np.ndarray:
        chunk = int(ep[f"videos/{self.key}/chunk_index"])
        file = int(ep[f"videos/{self.key}/file_index"])
        first = round(float(ep[f"videos/{self.key}/from_timestamp"]) * self.fps)
        if self._file != (chunk, file) or (self._next is not None and self._next[0] > first):
            path = self.root / self.meta.video_path.format(
                video_key=self.key, chunk_index=chunk, file_index=file
            )
            self._file, self._frames, self._next = (chunk, file), _video_frames(path), None
        out = []
        while len(out) < length:
            if self._next is None:
                try:
                    t, img = next(self._frames)  # type: ignore[arg-type]
                except StopIteration:
                    raise StoreError(
                        f"{self.key}: video ends before episode {ep['episode_index']}'s {length} frames"
                    ) from None
                self._next = (round(t * self.fps), img)
            idx, img = self._next
            if idx >= first:
                out.append(img)
            self._next = None
        return np.stack(out)


def import_lerobot(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    repo_id: str | None = None,
    progress: bool = True,
) -> tuple[int, list[str]]:
    """Convert a local LeRobot v3.0 dataset folder into a new store. Returns (episodes, unmapped feature names)."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if not (src / "meta" / "info.json").is_file():
        raise StoreError(f"{src}: not a LeRobot v3 dataset (no meta/info.json)")
    if (dst / "zarr.json").exists():
        raise StoreError(f"{dst}: already exists; import writes a new store")
    ds = _lerobot()(repo_id or f"local/{src.name}", root=src)
    meta = ds.meta
    feats = meta.info["features"]
    specs: dict[str, FeatureSpec] = {}
    sources: dict[str, str] = {}
    unmapped = []
    for k, f in feats.items():
        if k in STRUCTURAL:
            continue
        dtype = str(f["dtype"])
        shape = tuple(int(s) for s in f["shape"])
        key = store_key(k)
        if dtype in ("video", "image"):
            specs[key] = FeatureSpec("uint8", shape, units="RGB")
        elif dtype in ("float32", "float64", "int64", "int32", "bool", "uint8", "int16"):
            names = _names(f.get("names"))
            if k == "timestamp":
                specs[key] = FeatureSpec("float64", (), units="s")
            elif key in ("terminated", "success") and shape in ((1,), ()):
                specs[key] = FeatureSpec("bool", ())
            elif shape in ((1,), ()) and names is None:  # LeRobot stores per-step scalars as (1,)
                specs[key] = FeatureSpec(dtype, ())
            else:
                specs[key] = FeatureSpec(dtype, shape, names=names)
        else:
            unmapped.append(k)
            continue
        sources[key] = k
    if "action" not in specs:
        raise StoreError(f"{src}: the dataset has no 'action' feature")
    if "terminated" in specs:
        specs["truncated"] = FeatureSpec("bool", (), description="episode ended without next.done (imported)")
    # The arrow table as stored: LeRobot's own numpy/torch formatting casts float64 columns to float32.
    table = ds.hf_dataset.with_format("arrow")[:]
    columns = {
        key: _arrow_column(table, k)
        for key, k in sources.items()
        if feats[k]["dtype"] not in ("video", "image")
    }
    episodes = meta.episodes
    readers = {key: _VideoReader(src, k, meta) for key, k in sources.items() if feats[k]["dtype"] == "video"}
    images = [key for key, k in sources.items() if feats[k]["dtype"] == "image"]
    info = StoreInfo(
        control_rate_hz=float(meta.fps),
        features=specs,
        robot=str(meta.info.get("robot_type") or ""),
        provenance=provenance(
            {
                "imported_from": str(src),
                "format": "lerobot",
                "codebase_version": meta.info.get("codebase_version"),
            }
        ),  # fmt: skip
        extra={"lerobot_info": {k: v for k, v in meta.info.items() if k != "features"}},
    )
    with EpisodeWriter.create(dst, info) as w:
        for i in tqdm(
            range(len(episodes)), desc="import lerobot", unit="ep", disable=None if progress else True
        ):
            ep = episodes[i]
            start, stop = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
            n = stop - start
            data: dict[str, np.ndarray] = {}
            for key, col in columns.items():
                spec = specs[key]
                data[key] = col[start:stop].reshape(n, *spec.shape).astype(spec.dtype)
            for key, reader in readers.items():
                data[key] = reader.episode(ep, n)
            for key in images:
                data[key] = np.stack([np.asarray(ds.hf_dataset[j][sources[key]]) for j in range(start, stop)])
            if "terminated" in specs:
                trunc = np.zeros(n, bool)
                trunc[-1] = not data["terminated"][-1]
                data["truncated"] = trunc
            success = (
                bool(data["success"].any())
                if "success" in data
                else bool(data.get("terminated", [False])[-1])
            )
            tasks = list(ep["tasks"]) if ep.get("tasks") is not None else []
            w.add_episode(
                data, success=success, source="imported", task=str(tasks[0]) if tasks else "", seed=-1
            )
    if unmapped:
        print(f"robostack: warning: not imported (no store mapping): {', '.join(unmapped)}", file=sys.stderr)
    return len(episodes), unmapped


def export_lerobot(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    repo_id: str | None = None,
    progress: bool = True,
) -> int:
    """Write a store as a LeRobot v3.0 dataset folder that ``LeRobotDataset(repo_id, root=dst)`` loads offline."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise StoreError(f"{dst}: already exists; export writes a new dataset folder")
    store = EpisodeStore(src)
    if store.n_episodes == 0:
        raise StoreError(f"{src}: no committed episodes to export")
    if store.info.control_rate_hz <= 0:
        raise StoreError(f"{src}: the store records no control rate (LeRobot needs fps)")
    fps = store.info.control_rate_hz
    if abs(fps - round(fps)) > 1e-9:
        raise StoreError(
            f"{src}: control rate {fps} Hz is not a whole number of frames per second (LeRobot's fps)"
        )
    features: dict[str, dict[str, Any]] = {}
    keys = [k for k in store.keys if k not in ("timestamp", "truncated")]
    for k in keys:
        spec = store.info.features[k]
        lk = lerobot_key(k)
        if spec.dtype == "uint8" and len(spec.shape) == 3:
            features[lk] = {
                "dtype": "video",
                "shape": tuple(spec.shape),
                "names": ["height", "width", "channels"],
            }
        else:
            shape = tuple(spec.shape) or (1,)
            names = list(spec.names) if spec.names and len(spec.names) == int(np.prod(shape)) else None
            if spec.shape == (1,) and names is None:
                names = [
                    f"{k}_0"
                ]  # a one-element vector keeps its shape (unnamed (1,) reads back as a scalar)
            features[lk] = {"dtype": spec.dtype, "shape": shape, "names": names}
    if "success" not in store.keys:
        features["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
    ds = _lerobot().create(
        repo_id or f"local/{dst.name}", fps=int(round(fps)), root=dst, features=features,
        robot_type=store.info.robot or None, use_videos=True,
    )  # fmt: skip
    for meta in tqdm(store.episodes(), desc="export lerobot", unit="ep", disable=None if progress else True):
        data = store.read_episode(meta.index, keys)  # timestamps: LeRobot's frame_index / fps
        for t in range(meta.length):
            frame: dict[str, Any] = {"task": meta.task or "task"}
            for k in keys:
                v = np.asarray(data[k][t])
                frame[lerobot_key(k)] = v.reshape(features[lerobot_key(k)]["shape"]) if v.ndim == 0 else v
            if "success" not in store.keys:
                frame["next.success"] = np.array([meta.success and t == meta.length - 1])
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return store.n_episodes
