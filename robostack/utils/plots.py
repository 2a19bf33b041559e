"""Matplotlib figures users compare (PNG, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


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
