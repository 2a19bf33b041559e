"""The figure ``robostack quickstart`` shows of push demonstrations."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from robostack.data.buffer import EpisodeBuffer


def plot_push_trajectories(buffer: EpisodeBuffer, out: str | os.PathLike[str], max_world: int = 12) -> Path:
    """Left: pusher and block paths on the table. Right: pusher paths in each episode's task frame (block start
    at the origin, goal on +x), which shows the two ways around the block the expert takes."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 5))
    cmap = plt.get_cmap("tab20")
    for i in range(buffer.n_episodes):
        ep = buffer.episode(i)
        pusher = ep["obs/state"][:, :2]
        block = ep["obs/object"][:, :2]
        goal = ep["obs/object"][0, 4:6]
        if i < max_world:
            c = cmap(i % 20)
            ax0.plot(pusher[:, 0], pusher[:, 1], "-", color=c, lw=1, alpha=0.8)
            ax0.plot(block[:, 0], block[:, 1], "--", color=c, lw=2)
            ax0.add_patch(plt.Circle(goal, 0.035, color=c, alpha=0.15))
        d = goal - block[0]
        ang = np.arctan2(d[1], d[0])
        rot = np.array([[np.cos(-ang), -np.sin(-ang)], [np.sin(-ang), np.cos(-ang)]])
        rel = (pusher - block[0]) @ rot.T / max(np.linalg.norm(d), 1e-6)
        side = np.sign(np.mean(rel[: max(2, len(rel) // 3), 1])) or 1.0
        ax1.plot(rel[:, 0], rel[:, 1], "-", color="tab:blue" if side > 0 else "tab:orange", lw=0.7, alpha=0.5)
    ax0.set(
        title=f"push demonstrations (first {min(max_world, buffer.n_episodes)})",
        xlabel="x [m]",
        ylabel="y [m]",
    )
    ax0.set_aspect("equal")
    ax0.set_xlim(-0.28, 0.28)
    ax0.set_ylim(-0.28, 0.28)
    ax1.plot([0], [0], "s", color="tab:red", ms=10, label="block start")
    ax1.plot([1], [0], "o", color="tab:green", ms=10, label="goal")
    ax1.set(
        title=f"pusher paths in the task frame ({buffer.n_episodes} episodes)",
        xlabel="along block->goal (normalised)",
        ylabel="across",
    )
    ax1.set_aspect("equal")
    ax1.legend(loc="lower right")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
