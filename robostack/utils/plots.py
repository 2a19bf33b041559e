"""Matplotlib figures users compare (PNG, headless)."""

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


def plot_training_curve(metrics_jsonl: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path | None:
    """Training (and validation) loss per step; evaluation success on a second axis when there is any."""
    import json

    path = Path(metrics_jsonl)
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    loss = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    succ = [(r["step"], r["success_rate"]) for r in records if "success_rate" in r]
    if not loss:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*loss, strict=True), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), label="validation loss", lw=1.5)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training curve")
    if succ:
        ax2 = ax.twinx()
        ax2.plot(*zip(*succ, strict=True), "o-", color="tab:green", label="eval success")
        ax2.set(ylabel="success rate", ylim=(-0.02, 1.02))
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_bench(results: list[dict], out: str | os.PathLike[str]) -> Path:
    """Success (with 95% interval) per run, training time, and chunk latency: the three things users compare."""
    names = [r["name"] for r in results]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(max(9, 1.6 * len(names) + 4), 4))
    succ = np.array([r["success_rate"] for r in results])
    err = np.array([[r["success_rate"] - r["ci_low"], r["ci_high"] - r["success_rate"]] for r in results]).T
    colors = ["tab:gray" if "lerobot" in r["policy"] else "tab:blue" for r in results]
    axes[0].bar(x, succ, yerr=err, color=colors, capsize=3)
    axes[0].set(title="success rate (95% CI)", ylim=(0, 1.05))
    axes[1].bar(x, [r["train_seconds"] / 60 for r in results], color=colors)
    axes[1].set(title="training time [min]")
    axes[2].bar(x, [r["latency_p50_ms"] for r in results], color=colors)
    axes[2].set(title="chunk latency p50 [ms]")
    for ax in axes:
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
