"""Driving step-wise generators (``iter_train`` and its LeRobot twin): to the end, or several in turn."""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import torch

R = TypeVar("R")


def drain(gen: Generator[Any, None, R]) -> R:
    """Run ``gen`` to its end and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def alternate(gens: Sequence[Generator[Any, None, Any]], chunk: int) -> list[Any]:
    """Advance the generators in turn, ``chunk`` items each, until all have ended; returns their return values in
    the order given. A generator that ends drops out and the others go on without waiting for it."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    results: list[Any] = [None] * len(gens)
    live = list(range(len(gens)))
    while live:
        for i in list(live):
            for _ in range(chunk):
                try:
                    next(gens[i])
                except StopIteration as stop:
                    results[i] = stop.value
                    live.remove(i)
                    break
    return results


def pause_point(value: Any, device: torch.device | None = None) -> Generator[Any, None, float]:
    """Yield ``value`` once (``paused += yield from pause_point(...)``); returns the seconds spent suspended.
    Torch's global RNG (and ``device``'s CUDA one) is put back as it was: a training suspended while another drew
    random numbers goes on with its own stream, so the same seed gives the same weights alone or side by side."""
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device is not None and device.type == "cuda" else None
    suspended = time.perf_counter()
    yield value
    paused = time.perf_counter() - suspended
    torch.set_rng_state(cpu_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)
    return paused
