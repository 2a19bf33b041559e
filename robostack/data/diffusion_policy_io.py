"""Import Diffusion Policy zarr v2 stores (directory or ``.zarr.zip``) and export to that format.

Diffusion Policy keys are flat (``img``, ``state``, ``keypoint``, ``action``); robostack puts observations under
``obs/``: ``img -> obs/image``, ``action -> action``, everything else ``<k> -> obs/<k>``, and back on export.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import StoreError
from robostack.utils.provenance import provenance

NON_OBS = {"action", "reward", "terminated", "truncated", "timestamp", "is_intervention", "policy_action"}


def _to_store_key(k: str) -> str:
    if k == "img":
        return "obs/image"
    return k if k in NON_OBS else f"obs/{k}"


def _to_dp_key(k: str) -> str:
    if k == "obs/image":
        return "img"
    return k[4:] if k.startswith("obs/") else k.replace("/", "_")


def _open_dp(src: Path) -> zarr.Group:
    try:
        if src.suffix == ".zip" and src.is_file():
            store = zarr.storage.ZipStore(src, mode="r")
            return zarr.open_group(store=store, mode="r")
        if not src.is_dir():
            raise StoreError(f"{src}: no such store")
        return zarr.open_group(store=zarr.storage.LocalStore(src, read_only=True), mode="r")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{src}: not a readable zarr store ({type(exc).__name__}: {exc})") from None


def import_diffusion_policy(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    control_rate_hz: float = 10.0,
    progress: bool = True,
) -> int:
    src = Path(src)
    root = _open_dp(src)
    try:
        ends = np.asarray(root["meta/episode_ends"][:], np.int64)
        data = root["data"]
    except KeyError as exc:
        raise StoreError(f"{src}: not a Diffusion Policy store (missing {exc})") from None
    if ends.size == 0:
        raise StoreError(f"{src}: holds no episodes")
    if ends[0] <= 0 or np.any(np.diff(ends) <= 0):
        raise StoreError(f"{src}: meta/episode_ends is not strictly increasing")
    arrays = {k: v for k, v in data.arrays()}
    if not arrays:
        raise StoreError(f"{src}: data/ holds no arrays")
    for k, a in arrays.items():
        if a.shape[0] < ends[-1]:
            raise StoreError(f"{src}: data/{k} has {a.shape[0]} rows, episode_ends needs {ends[-1]}")
    features = {_to_store_key(k): FeatureSpec(str(a.dtype), tuple(a.shape[1:])) for k, a in arrays.items()}
    info = StoreInfo(
        control_rate_hz=control_rate_hz,
        features=features,
        provenance=provenance({"import": "diffusion-policy", "source": str(src)}),
        extra={"diffusion_policy": {"keys": {_to_store_key(k): k for k in arrays}}},
    )
    starts = np.concatenate([[0], ends[:-1]])
    try:
        loaded = {k: np.asarray(a[: ends[-1]]) for k, a in arrays.items()}
    except Exception as exc:
        raise StoreError(f"{src}: unreadable chunk ({type(exc).__name__}: {exc})") from None
    with EpisodeWriter.create(dst, info) as w:
        for s, e in tqdm(
            list(zip(starts, ends, strict=True)), desc="import dp", disable=None if progress else True
        ):
            w.add_episode(
                {_to_store_key(k): v[s:e] for k, v in loaded.items()},
                success=True,
                source="imported",
                quality="human",
            )
    return int(ends.size)


def export_diffusion_policy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Write a zarr v2 store that Diffusion Policy's ``ReplayBuffer`` opens as is."""
    store = EpisodeStore(src)
    dst = Path(dst)
    if dst.exists():
        raise StoreError(f"{dst}: already exists")
    root = zarr.open_group(store=zarr.storage.LocalStore(dst), mode="w", zarr_format=2)
    for k in store.keys:
        arr = store.read(k)
        rows = max(1, min(arr.shape[0], (2 << 20) // max(1, arr[:1].nbytes)))
        root.create_array(f"data/{_to_dp_key(k)}", data=arr, chunks=(rows, *arr.shape[1:]))
    root.create_array(
        "meta/episode_ends", data=store.episode_ends.astype(np.int64), chunks=(max(1, store.n_episodes),)
    )
    return store.n_episodes
