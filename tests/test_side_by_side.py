"""Two trainings alternating in one process (``robostack bench``'s side-by-side pair): each learns exactly what it
learns alone, and the time it spends suspended is not counted as its training time."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file

from robostack.algos.bc import iter_train, train
from robostack.bench.lerobot_run import iter_train_lerobot, train_lerobot
from robostack.bench.runner import train_config
from robostack.train.run_log import read_metrics
from robostack.utils.generators import alternate, drain

TINY = [
    "policy.unet.down_dims=[16,32,64]",
    "policy.unet.step_embed_dim=32",
    "optim.batch_size=16",
    "optim.warmup_steps=4",
    "steps=12",
    "log_every=4",
    "save_every=12",
]


def test_alternate_takes_turns_in_chunks_and_returns_every_result():
    seen = []

    def gen(name, n):
        for i in range(n):
            seen.append((name, i))
            yield i
        return f"{name} done"

    assert alternate([gen("a", 5), gen("b", 2)], chunk=2) == ["a done", "b done"]
    # b ends inside its second turn; a goes on alone
    assert seen == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2), ("a", 3), ("a", 4)]
    assert drain(gen("c", 3)) == "c done"
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        alternate([gen("d", 1)], chunk=0)


def test_side_by_side_learns_what_each_learns_alone(tmp_path, push_store):
    train(train_config("diffusion_push", push_store, TINY), tmp_path / "alone", progress=False)
    lerobot_alone, _ = train_lerobot(
        train_config("diffusion_push", push_store, TINY), push_store, progress=False
    )
    _, (lerobot_together, _) = alternate(
        [
            iter_train(
                train_config("diffusion_push", push_store, TINY), tmp_path / "together", progress=False
            ),
            iter_train_lerobot(train_config("diffusion_push", push_store, TINY), push_store, progress=False),
        ],
        chunk=3,
    )
    ckpt = "checkpoints/step_00000012/model.safetensors"
    alone, together = load_file(str(tmp_path / "alone" / ckpt)), load_file(str(tmp_path / "together" / ckpt))
    assert alone.keys() == together.keys() and all(torch.equal(alone[k], together[k]) for k in alone)
    a, b = lerobot_alone.policy.state_dict(), lerobot_together.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class SuspensionClock:
    """``time.perf_counter`` plus an hour for every suspension: a suspension far longer than any training could
    take on any machine, so the check below cannot be broken by a slow or busy machine."""

    HOUR = 3600.0

    def __init__(self) -> None:
        self.offset = 0.0
        self.real = time.perf_counter

    def __call__(self) -> float:
        return self.real() + self.offset

    def suspend(self) -> None:
        self.offset += self.HOUR


def test_time_suspended_between_steps_is_not_training_time(tmp_path, push_store, monkeypatch):
    clock = SuspensionClock()
    monkeypatch.setattr(time, "perf_counter", clock)  # the trainers and pause_point read time.perf_counter
    steps = iter_train(train_config("diffusion_push", push_store, TINY), tmp_path / "run", progress=False)
    for _ in steps:
        clock.suspend()
    train_s = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["train_s"]
    assert 0 < train_s < clock.HOUR, train_s  # had the suspensions counted, it would be 12 hours or more
    lerobot = iter_train_lerobot(train_config("diffusion_push", push_store, TINY), push_store, progress=False)
    for _ in range(12):
        next(lerobot)
        clock.suspend()
    with pytest.raises(StopIteration) as stop:
        next(lerobot)
    assert 0 < stop.value.value[1] < clock.HOUR
