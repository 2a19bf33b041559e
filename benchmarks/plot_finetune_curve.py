"""Plot an on-policy fine-tuning run's curves (DPPO / Gaussian-PPO): success of the training rollouts' finished
episodes per iteration (smoothed over a window) and the train-eval checkpoints, against environment steps.

    .venv/bin/python benchmarks/plot_finetune_curve.py runs/dppo-mlp/t3 --out benchmarks/results/dppo_mlp_push.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in args.runs:
        rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in rows if "episode_success_rate" in r]
        steps = {r["step"]: r["env_steps"] for r in train}
        x = np.array([r["env_steps"] for r in train])
        y = np.array([r["episode_success_rate"] for r in train])
        k = min(args.window, len(y))
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        line = ax.plot(
            x[k - 1 :], 100 * smooth, label=f"{Path(run).name}: training rollouts ({k}-iteration mean)"
        )
        ev = [(steps[r["step"]], r["eval_success_rate"]) for r in rows if "eval_success_rate" in r]
        if ev:
            ax.plot(*zip(*[(s, 100 * v) for s, v in ev], strict=True), "o--", color=line[0].get_color(),
                    label=f"{Path(run).name}: train-eval (deterministic)")  # fmt: skip
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
