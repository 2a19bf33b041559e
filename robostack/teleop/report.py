"""The end of an operator session: a summary table and a timeline (one row per episode: who drove when)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robostack.teleop.session import EpisodeLog
from robostack.utils.table import format_table


def summary_table(logs: list[EpisodeLog], control_rate_hz: float) -> str:
    committed = [e for e in logs if e.committed]
    steps = sum(e.steps for e in committed)
    firsts = [e.first_takeover_step / control_rate_hz for e in committed if e.first_takeover_step is not None]
    rows = [
        ("episodes committed", f"{len(committed)} (discarded {len(logs) - len(committed)})"),
        ("successes", f"{sum(e.success for e in committed)} of {len(committed)}"),
        ("operator overrides", str(sum(e.override is not None for e in committed))),
        (
            "takeovers per episode",
            f"{np.mean([e.takeovers for e in committed]):.2f}" if committed else "-",
        ),
        (
            "steps driven by the human",
            f"{100 * sum(e.human_steps for e in committed) / steps:.1f}% of {steps}" if steps else "-",
        ),
        (
            "time to first takeover",
            f"{np.mean(firsts):.2f} s mean ({len(firsts)} episodes with one)" if firsts else "no takeover",
        ),
    ]
    return format_table(["operator session", ""], rows)


def plot_timeline(
    logs: list[EpisodeLog], control_rate_hz: float, out: str | os.PathLike[str], policy: bool
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(logs), 3) + 1.2))
    for row, e in enumerate(logs):
        y = len(logs) - 1 - row
        end = e.steps / control_rate_hz
        face = "tab:blue" if policy else "tab:orange"
        ax.broken_barh([(0, end)], (y - 0.35, 0.7), facecolors=face, alpha=0.5 if e.committed else 0.15)
        spans = [(a / control_rate_hz, (b - a) / control_rate_hz) for a, b in e.human_spans]
        if spans:
            ax.broken_barh(spans, (y - 0.35, 0.7), facecolors="tab:orange")
        mark = "discarded" if not e.committed else ("success" if e.success else "failure")
        color = {"success": "tab:green", "failure": "tab:red", "discarded": "grey"}[mark]
        ax.text(
            end + 0.1, y, mark + ("*" if e.override is not None else ""), va="center", color=color, fontsize=8
        )
    ax.set_yticks(range(len(logs)), [f"ep {e.run_index} (seed {e.seed})" for e in reversed(logs)], fontsize=8)
    ax.set_xlabel("time in episode (s)")
    who = "blue: policy, orange: human" if policy else "orange: human (teleoperated)"
    ax.set_title(f"who was in control ({who}; * operator's mark)", fontsize=9)
    xmax = max((e.steps for e in logs), default=1) / control_rate_hz
    ax.set_xlim(0, xmax * 1.25 + 0.5)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
