"""``robostack data quality``: datasets side by side -- success, length, path, smoothness and consistency.

Per store (committed episodes only):

- success rate with its 95% Wilson interval; episode length mean and standard deviation;
- path length: distance travelled by the tool, summed over steps. The tool position is the first ``obs/*``
  feature whose names hold ``<p>_x``, ``<p>_y`` (and ``<p>_z`` when present) for one prefix ``p`` (``pusher_*`` on
  push, ``eef_*`` on lift and can); stores without such names report no path length;
- RMS jerk (third difference) and mean |delta a| (mean absolute change per step and action dimension) of the
  *executed* actions (``executed_action`` where a store relabels, else ``action``), averaged over episodes;
- phase variance: each episode's executed actions resampled to 50 points of normalised time (its phase), the
  variance across episodes at each phase, averaged over phases and dimensions. Successful episodes only (they all
  go from start to goal, so phases match), all episodes when fewer than two succeeded.

The plot draws each dataset's tool paths in the horizontal plane (successes solid, failures dashed).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robostack.data.store import EpisodeStore
from robostack.errors import RobostackError
from robostack.eval.metrics import rms_jerk, wilson_interval
from robostack.utils.table import format_table

PHASES = 50
PLOTTED_EPISODES = 40


@dataclass
class DatasetQuality:
    store: str
    task: str
    episodes: int
    success_rate: float
    ci95: tuple[float, float]
    length_mean: float
    length_std: float
    path_length: float | None
    rms_jerk: float
    mean_abs_delta_action: float
    phase_variance: float
    sources: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tool_position(features: dict[str, Any]) -> tuple[str, list[int]] | None:
    """(key, column indices of x, y[, z]) of the tool position, found by feature names; None when none matches."""
    for key, spec in features.items():
        names = list(getattr(spec, "names", None) or [])
        if not key.startswith("obs/") or not names:
            continue
        for name in names:
            m = re.fullmatch(r"(.+)_x", name)
            if m and f"{m.group(1)}_y" in names:
                p = m.group(1)
                cols = [names.index(f"{p}_{a}") for a in "xyz" if f"{p}_{a}" in names]
                return key, cols
    return None


def _phase_resample(a: np.ndarray, n: int = PHASES) -> np.ndarray:
    t = np.linspace(0.0, 1.0, a.shape[0])
    grid = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(grid, t, a[:, d]) for d in range(a.shape[1])], axis=1)


def _episodes(store: EpisodeStore) -> tuple[list[np.ndarray], list[np.ndarray | None], np.ndarray]:
    action_key = "executed_action" if "executed_action" in store.keys else "action"
    if action_key not in store.keys:
        raise RobostackError(f"{store.path}: no 'action' key to measure")
    pos = tool_position(store.info.features)
    actions = store.read(action_key).astype(np.float64)
    positions = store.read(pos[0])[:, pos[1]].astype(np.float64) if pos else None
    starts, ends = store.episode_starts(), store.episode_ends
    acts = [actions[s:e] for s, e in zip(starts, ends, strict=True)]
    paths = [positions[s:e] if positions is not None else None for s, e in zip(starts, ends, strict=True)]
    return acts, paths, store.episode_field("success").astype(bool)


def measure(path: str | os.PathLike[str]) -> DatasetQuality:
    store = EpisodeStore(path)
    if store.n_episodes == 0:
        raise RobostackError(f"{path}: no committed episodes to measure")
    acts, paths, success = _episodes(store)
    lengths = np.array([a.shape[0] for a in acts])
    n_succ = int(success.sum())
    chosen = [a for a, s in zip(acts, success, strict=True) if s] if n_succ >= 2 else acts
    phase_var = (
        float(np.mean(np.var(np.stack([_phase_resample(a) for a in chosen if a.shape[0] >= 2]), axis=0)))
        if sum(a.shape[0] >= 2 for a in chosen) >= 2
        else float("nan")
    )
    sources: dict[str, int] = {}
    for e in store.episodes():
        sources[e.source] = sources.get(e.source, 0) + 1
    return DatasetQuality(
        store=str(path),
        task=",".join(store.info.tasks or []) or "?",
        episodes=store.n_episodes,
        success_rate=n_succ / store.n_episodes,
        ci95=wilson_interval(n_succ, store.n_episodes),
        length_mean=float(lengths.mean()),
        length_std=float(lengths.std()),
        path_length=(
            float(np.mean([np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in paths if p is not None]))
            if paths[0] is not None
            else None
        ),
        rms_jerk=float(np.mean([rms_jerk(a) for a in acts])),
        mean_abs_delta_action=float(
            np.mean([np.abs(np.diff(a, axis=0)).mean() if a.shape[0] > 1 else 0.0 for a in acts])
        ),
        phase_variance=phase_var,
        sources=sources,
    )


def quality_table(results: list[DatasetQuality]) -> str:
    rows = []
    for r in results:
        rows.append(
            (
                Path(r.store).name,
                str(r.episodes),
                f"{100 * r.success_rate:.1f}% ({100 * r.ci95[0]:.0f}-{100 * r.ci95[1]:.0f})",
                f"{r.length_mean:.1f} +- {r.length_std:.1f}",
                "-" if r.path_length is None else f"{r.path_length:.3f}",
                f"{r.rms_jerk:.4f}",
                f"{r.mean_abs_delta_action:.4f}",
                f"{r.phase_variance:.4f}",
            )
        )
    return format_table(
        ["store", "episodes", "success (95%)", "length", "path", "RMS jerk", "mean |da|", "phase var"], rows
    )


def plot_paths(stores: list[str], out: str | os.PathLike[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stores), figsize=(4 * len(stores), 4), squeeze=False)
    for ax, path in zip(axes[0], stores, strict=True):
        store = EpisodeStore(path)
        acts, paths, success = _episodes(store)
        shown = list(range(min(PLOTTED_EPISODES, store.n_episodes)))
        for i in shown:
            style = "-" if success[i] else "--"
            color = "tab:green" if success[i] else "tab:red"
            if paths[i] is not None:
                ax.plot(paths[i][:, 0], paths[i][:, 1], style, color=color, lw=0.8, alpha=0.6)
                ax.plot(paths[i][0, 0], paths[i][0, 1], "o", color="k", ms=2)
            else:
                ax.plot(np.linspace(0, 1, acts[i].shape[0]), acts[i][:, 0], style, color=color, lw=0.8)
        ax.set_title(f"{Path(path).name} ({len(shown)} of {store.n_episodes})", fontsize=9)
        ax.set_xlabel("x" if paths[0] is not None else "phase")
        ax.set_ylabel("y" if paths[0] is not None else "action[0]")
        ax.set_aspect("equal" if paths[0] is not None else "auto", adjustable="datalim")
    fig.suptitle("tool paths (solid: success, dashed: failure)")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
