"""argparse choices read from a registry only when argparse needs them (a bad value, ``--help``), so building the
parser does not import torch and every policy family for commands that use neither."""

from __future__ import annotations

from collections.abc import Callable, Iterator


class RegistryChoices:
    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def policy_families() -> RegistryChoices:
    """The families ``robostack train`` can train."""

    def names() -> list[str]:
        from robostack.policies.registry import policy_names

        return policy_names(trainable_only=True)

    return RegistryChoices(names)


def algorithms(stage: str) -> RegistryChoices:
    def names() -> list[str]:
        from robostack.algos.registry import algorithm_names

        return algorithm_names(stage)

    return RegistryChoices(names)
