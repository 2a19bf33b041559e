"""The three evaluation seed ranges, disjoint, so no reported number was tuned on the seeds it is reported on.

- ``train-eval``: evaluation during training (``eval.every``, checkpoints' ``eval.json``).
- ``selection``: every choice -- recipe, training steps, actions per chunk, checkpoint, training seed, GPC
  weights -- is made on these.
- ``test``: what is reported (README tables, benchmark reports); never looked at to choose anything.

Demonstrations are generated from seed 0 upwards, so every range starts far above any store's seeds. The test
range was untouched by every evaluation when the protocol was set (``benchmarks/results/experiments.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from robostack.errors import RobostackError


@dataclass(frozen=True)
class SeedRange:
    name: str
    start: int
    stop: int
    purpose: str

    def seeds(self, episodes: int) -> range:
        """The first ``episodes`` seeds of the range; refuses to run past it."""
        if self.start + episodes > self.stop:
            raise RobostackError(
                f"{episodes} episodes leave the '{self.name}' seed range [{self.start}, {self.stop})"
            )
        return range(self.start, self.start + episodes)


RANGES: dict[str, SeedRange] = {
    r.name: r
    for r in (
        SeedRange("train-eval", 100_000, 200_000, "evaluation during training"),
        SeedRange(
            "selection", 200_000, 1_000_000, "choosing recipes, steps, chunk lengths, checkpoints, weights"
        ),
        SeedRange("test", 1_000_000, 2_000_000, "reported results only"),
    )
}


def seed_range(name: str) -> SeedRange:
    if name not in RANGES:
        raise RobostackError(f"unknown seed range '{name}' (choose from {', '.join(RANGES)})")
    return RANGES[name]


def range_of(first: int, episodes: int) -> str:
    """Name of the range seeds [first, first + episodes) lie in, or 'custom' when they lie in none or straddle."""
    for r in RANGES.values():
        if r.start <= first and first + episodes <= r.stop:
            return r.name
    return "custom"


def first_seed(entry: dict, episodes: int, default: str = "test") -> int:
    """First seed of an evaluation entry (a bench suite's ``eval``): an explicit ``seed``, else its ``seeds`` range
    (default ``test``), checked to hold ``episodes`` seeds."""
    if "seed" in entry:
        return int(entry["seed"])
    return seed_range(entry.get("seeds", default)).seeds(episodes).start
