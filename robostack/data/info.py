"""The dataset summary behind ``robostack data info``."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from robostack.data.store import EpisodeStore, data_keys


def store_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    store = EpisodeStore(path)
    episodes = store.episodes()
    n_steps = store.n_steps
    keys = {}
    for k in store.keys:
        arr = store.array(k)
        keys[k] = {"shape": [n_steps, *arr.shape[1:]], "dtype": str(arr.dtype)}
    intervention_rate = None
    if "is_intervention" in store.keys and n_steps:
        flags = store.read("is_intervention").astype(bool)
        intervention_rate = float(flags.mean())
    lengths = np.array([e.length for e in episodes]) if episodes else np.zeros(0)
    tail = max((store.group["data/" + k].shape[0] - n_steps for k in data_keys(store.group)), default=0)
    return {
        "path": str(store.path),
        "format": "robostack" if store.is_robostack else "diffusion-policy",
        "episodes": store.n_episodes,
        "steps": n_steps,
        "control_rate_hz": store.info.control_rate_hz,
        "success_rate": float(np.mean([e.success for e in episodes])) if episodes else None,
        "intervention_rate": intervention_rate,
        "mean_length": float(lengths.mean()) if lengths.size else None,
        "sources": dict(Counter(e.source for e in episodes)),
        "tasks": dict(Counter(e.task for e in episodes)),
        "quality": {
            q: {"episodes": len(eps), "success_rate": float(np.mean([e.success for e in eps]))}
            for q, eps in _by_quality(episodes).items()
        },
        "robot": store.info.robot,
        "keys": keys,
        "uncommitted_rows": int(tail),
    }


def _by_quality(episodes: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for e in episodes:
        out.setdefault(e.quality or "?", []).append(e)
    return out


def format_summary(s: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        f"store            {s['path']} ({s['format']})",
        f"episodes         {s['episodes']}   steps {s['steps']}   mean length "
        + ("n/a" if s["mean_length"] is None else f"{s['mean_length']:.1f}"),
        f"control rate     {s['control_rate_hz']:g} Hz",
        f"success rate     {pct(s['success_rate'])}",
        f"intervention     {pct(s['intervention_rate'])} of steps",
        f"sources          {', '.join(f'{k}: {v}' for k, v in s['sources'].items()) or '-'}",
        f"tasks            {', '.join(f'{k or chr(34) * 2}: {v}' for k, v in s['tasks'].items()) or '-'}",
    ]
    if len(s["quality"]) > 1:  # the mix of a mixed-quality store (offline RL data)
        mix = ", ".join(
            f"{q}: {v['episodes']} ({pct(v['success_rate'])} success)" for q, v in s["quality"].items()
        )
        lines.append(f"quality          {mix}")
    if s["uncommitted_rows"]:
        lines.append(
            f"uncommitted rows {s['uncommitted_rows']} (ignored; 'robostack data validate --repair' drops them)"
        )
    lines.append("keys")
    width = max((len(k) for k in s["keys"]), default=0)
    for k, v in s["keys"].items():
        lines.append(f"  {k:<{width}}  {tuple(v['shape'])!s:<22} {v['dtype']}")
    return "\n".join(lines)
