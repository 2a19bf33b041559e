"""Import from and export to robomimic HDF5 (``data/demo_N/{obs,next_obs,actions,rewards,dones,states}``,
``mask/<filter>``, ``env_args``).

Names map ``actions -> action``, ``rewards -> reward``, ``dones -> terminated``, ``states -> sim_state``,
``obs/<k> -> obs/<k>``, ``next_obs/<k> -> next_obs/<k>``; anything else in a demo keeps its name. Original dtypes,
demo names, filters and ``env_args`` are kept in the store's attributes, so robomimic -> store -> robomimic gives
back every array equal, with its dtype.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter
from robostack.errors import StoreError
from robostack.utils.provenance import provenance

TO_STORE = {"actions": "action", "rewards": "reward", "dones": "terminated", "states": "sim_state"}
FROM_STORE = {v: k for k, v in TO_STORE.items()}


def _demo_names(data: h5py.Group) -> list[str]:
    names = [n for n in data if isinstance(data[n], h5py.Group)]

    def key(n: str) -> tuple[int, str]:
        m = re.search(r"(\d+)$", n)
        return (int(m.group(1)) if m else 1 << 60, n)

    return sorted(names, key=key)


def _flatten(group: h5py.Group, prefix: str = "") -> dict[str, h5py.Dataset]:
    out: dict[str, h5py.Dataset] = {}
    for name, node in group.items():
        if isinstance(node, h5py.Group):
            out.update(_flatten(node, f"{prefix}{name}/"))
        else:
            out[prefix + name] = node
    return out


def _store_key(h5_key: str) -> str:
    return TO_STORE.get(h5_key, h5_key)


def import_robomimic(src: str | os.PathLike[str], dst: str | os.PathLike[str], progress: bool = True) -> int:
    src = Path(src)
    if not src.is_file():
        raise StoreError(f"{src}: no such file")
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise StoreError(f"{src}: not a readable HDF5 file ({exc})") from None
    with f:
        if "data" not in f or not isinstance(f["data"], h5py.Group):
            raise StoreError(f"{src}: not a robomimic file (no 'data' group)")
        demos = _demo_names(f["data"])
        if not demos:
            raise StoreError(f"{src}: 'data' holds no demos")
        first = _flatten(f["data"][demos[0]])
        if "actions" not in first:
            raise StoreError(f"{src}: {demos[0]} has no 'actions'")
        info = _store_info(f, src, first, demos)
        task = str(info.extra["robomimic"]["env_args"].get("env_name", "robomimic"))
        with EpisodeWriter.create(dst, info) as w:
            for name in tqdm(demos, desc="import robomimic", unit="demo", disable=None if progress else True):
                ep = _episode(f["data"][name], name, first, demos[0], src)
                dones = ep.get("terminated")
                success = bool(dones[-1]) if dones is not None and dones.size else False
                w.add_episode(ep, success=success, source="imported", task=task, quality="human")
    return len(demos)


def _store_info(f: Any, src: Path, first: dict[str, Any], demos: list[str]) -> StoreInfo:
    """Feature specs from the first demo; env_args, dtypes, demo names, masks and attributes kept for export."""
    env_args = json.loads(f["data"].attrs.get("env_args", "{}") or "{}")
    dtypes = {_store_key(k): str(d.dtype) for k, d in first.items()}
    features = {}
    for k, d in first.items():
        sk = _store_key(k)
        features[sk] = FeatureSpec(
            dtype="bool" if sk == "terminated" else str(d.dtype), shape=tuple(d.shape[1:])
        )
    masks = {}
    if "mask" in f:
        for name, ds in f["mask"].items():
            masks[name] = [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]
    return StoreInfo(
        control_rate_hz=float(env_args.get("env_kwargs", {}).get("control_freq", 20.0)),
        features=features,
        robot=str(env_args.get("env_kwargs", {}).get("robots", "")),
        task_description=str(env_args.get("env_name", "")),
        provenance=provenance({"import": "robomimic", "source": str(src)}),
        extra={
            "robomimic": {
                "env_args": env_args,
                "dtypes": dtypes,
                "demo_names": demos,
                "masks": masks,
                "data_attrs": {k: _jsonable(v) for k, v in f["data"].attrs.items() if k != "env_args"},
            }
        },
    )


def _episode(
    group: Any, name: str, first: dict[str, Any], first_name: str, src: Path
) -> dict[str, np.ndarray]:
    """One demo's arrays under store keys; a demo whose keys differ from the first one's is refused."""
    flat = _flatten(group)
    missing = sorted(set(first) - set(flat))
    if missing:
        raise StoreError(f"{src}: {name} lacks {', '.join(missing)} that {first_name} has")
    ep: dict[str, np.ndarray] = {}
    for k, d in flat.items():
        if k not in first:
            raise StoreError(f"{src}: {name} has '{k}' that {first_name} lacks")
        arr = d[()]
        if _store_key(k) == "terminated":
            if not np.isin(arr, (0, 1)).all():
                raise StoreError(f"{src}: {name}/dones holds values other than 0/1")
            arr = arr.astype(bool)
        ep[_store_key(k)] = arr
    return ep


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def export_robomimic(src: str | os.PathLike[str], dst: str | os.PathLike[str], progress: bool = True) -> int:
    store = EpisodeStore(src)
    dst = Path(dst)
    if dst.exists():
        raise StoreError(f"{dst}: already exists")
    meta = store.info.extra.get("robomimic", {})
    dtypes: dict[str, str] = meta.get("dtypes", {})
    episodes = store.episodes()
    names = meta.get("demo_names") or [f"demo_{i}" for i in range(len(episodes))]
    if len(names) != len(episodes):
        names = [f"demo_{i}" for i in range(len(episodes))]
    env_args = meta.get("env_args") or {
        "env_name": episodes[0].task if episodes else "",
        "type": 1,
        "env_kwargs": {"control_freq": store.info.control_rate_hz},
    }
    tmp = dst.with_name(dst.name + ".partial")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        total = 0
        for ep, name in tqdm(
            list(zip(episodes, names, strict=True)),
            desc="export robomimic",
            disable=None if progress else True,
        ):
            arrays = store.read_episode(ep.index)
            g = data.create_group(name)
            for k, arr in arrays.items():
                h5_key = FROM_STORE.get(k, k)
                out = (
                    arr.astype(dtypes[k])
                    if k in dtypes
                    else (arr.astype(np.int64) if k == "terminated" else arr)
                )
                g.create_dataset(h5_key, data=out)
            if "next_obs" not in g and any(k.startswith("obs/") for k in arrays):
                for k, arr in arrays.items():
                    if k.startswith("obs/"):  # robomimic's next_obs: obs shifted by one, last frame repeated
                        g.create_dataset("next_obs/" + k[4:], data=np.concatenate([arr[1:], arr[-1:]]))
            g.attrs["num_samples"] = ep.length
            total += ep.length
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_args)
        for k, v in meta.get("data_attrs", {}).items():
            if k != "total":
                data.attrs[k] = v
        masks = meta.get("masks") or {}
        if not meta.get("masks"):
            masks = {"successful": [n for e, n in zip(episodes, names, strict=True) if e.success]}
        if masks:
            mg = f.create_group("mask")
            for k, v in masks.items():
                mg.create_dataset(k, data=np.array([s.encode() for s in v], dtype="S"))
    os.replace(tmp, dst)
    return len(episodes)
