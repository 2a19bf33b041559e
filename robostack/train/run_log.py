"""What a run logs: ``metrics.jsonl`` (always), TensorBoard scalars (when installed), a progress bar, and the training
curve PNG at the end. Only the main rank writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

METRICS = "metrics.jsonl"


class RunLog:
    def __init__(self, run: Path, enabled: bool, total: int, initial: int, desc: str, progress: bool) -> None:
        self.run = run
        self.enabled = enabled
        self.writer: Any = None
        self.file = None
        if enabled:
            run.mkdir(parents=True, exist_ok=True)
            if initial:
                forget_metrics_after(run / METRICS, initial)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run / "tb"))
            except ImportError:  # TensorBoard is optional; metrics.jsonl always has the same scalars
                self.writer = None
            self.file = (run / METRICS).open("a")
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            disable=None if (progress and enabled) else True,
        )

    def log(self, record: dict[str, Any]) -> None:
        """One record with its ``step``: a line of metrics.jsonl and a scalar per other field."""
        if not self.enabled:
            return
        if self.writer is not None:
            for k, v in record.items():
                if k != "step":
                    self.writer.add_scalar(k, v, record["step"])
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(curve=False)

    def close(self, curve: bool = True) -> None:
        self.bar.close()
        if not self.enabled:
            return
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()
        if curve:
            from robostack.utils.plots import plot_training_curve

            plot_training_curve(self.run / METRICS, self.run / "training_curve.png")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl; a line cut short by a kill is not a record."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def forget_metrics_after(path: Path, step: int) -> None:
    """Drop what a killed run logged after its last checkpoint: the resumed run trains those steps again, and the
    metrics, the training curve and the recorded training time should describe one history."""
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)


def recorded_train_seconds(run: Path) -> float:
    """Training wall time the run's metrics record so far (0 when none is recorded)."""
    seconds = [r["train_s"] for r in read_metrics(run / METRICS) if "train_s" in r]
    return seconds[-1] if seconds else 0.0


def write_run_files(run: Path, config: Any, fingerprint: dict[str, Any] | None) -> None:
    """What makes a run folder reproducible: the resolved ``config.yaml``, ``data.json`` (which episodes of which
    store) and ``provenance.json`` (code version, packages, machine)."""
    from dataclasses import asdict

    from robostack.config import save_yaml
    from robostack.utils.provenance import provenance

    run.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run / "config.yaml")
    if fingerprint is not None:
        (run / "data.json").write_text(json.dumps(fingerprint, indent=1))
    (run / "provenance.json").write_text(json.dumps(provenance(asdict(config)), indent=1, default=str))
