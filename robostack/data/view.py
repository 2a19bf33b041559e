"""``robostack data view``: one episode in the Rerun viewer (``rerun-sdk``, what LeRobot users already use).

Logged on the ``step`` timeline (and ``time``, the episode's timestamps): every camera (``obs/image_*``) as an image,
every other observation and the actions (``action``, ``policy_action``, ``human_action``) as scalar curves, one per
element under the element's name, ``is_intervention`` as a 0/1 curve plus a text entry at each takeover and
hand-back, and the episode's outcome as a text entry at its last step. ``save`` writes a ``.rrd`` recording
instead of opening the viewer (no display needed); ``rerun FILE.rrd`` opens it later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from robostack.data.store import EpisodeStore
from robostack.errors import RobostackError

CURVES = ("action", "policy_action", "human_action", "reward")


def _rerun() -> Any:
    try:
        import rerun as rr
    except ImportError as exc:
        raise RobostackError(
            f"rerun-sdk is not installed ({exc}); it draws episodes (pip install rerun-sdk)"
        ) from None
    return rr


def _element_names(store: EpisodeStore, key: str, n: int) -> list[str]:
    names = store.info.features[key].names if key in store.info.features else None
    return list(names) if names and len(names) == n else [str(i) for i in range(n)]


def view_episode(
    path: str | os.PathLike[str], episode: int, save: str | os.PathLike[str] | None = None
) -> int:
    """Log one episode; returns the number of steps logged."""
    rr = _rerun()
    store = EpisodeStore(path)
    data = store.read_episode(episode, [k for k in store.keys if k != "sim_state"])
    meta = store.episodes()[episode]
    rr.init(f"robostack/{Path(path).name}/episode_{episode}", spawn=save is None)
    if save is not None:
        rr.save(str(save))
    images = [k for k in data if k.startswith("obs/image")]
    vectors = [k for k in data if (k.startswith("obs/") and k not in images) or k in CURVES]
    flags = data.get("is_intervention")
    times = data.get("timestamp", np.arange(meta.length) / max(store.info.control_rate_hz, 1.0))
    for t in range(meta.length):
        rr.set_time("step", sequence=t)
        rr.set_time("time", duration=float(times[t]))
        for k in images:
            rr.log(k, rr.Image(data[k][t]))
        for k in vectors:
            v = np.atleast_1d(np.asarray(data[k][t], np.float64))
            for name, x in zip(_element_names(store, k, v.size), v, strict=True):
                rr.log(f"{k}/{name}", rr.Scalars(float(x)))
        if flags is not None:
            rr.log("is_intervention", rr.Scalars(float(flags[t])))
            if flags[t] and (t == 0 or not flags[t - 1]):
                rr.log("events", rr.TextLog("human takes over", level=rr.TextLogLevel.WARN))
            elif t > 0 and flags[t - 1] and not flags[t]:
                rr.log("events", rr.TextLog("policy back in control"))
    rr.log(
        "events",
        rr.TextLog(f"episode {episode} ({meta.source}, task {meta.task or '-'}): "
                   + ("success" if meta.success else "failure"),
                   level=rr.TextLogLevel.INFO if meta.success else rr.TextLogLevel.ERROR),
    )  # fmt: skip
    if save is not None:
        rr.disconnect()
    return meta.length
