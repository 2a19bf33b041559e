"""One process per rank under ``torchrun`` (NCCL on GPUs, Gloo on CPU), or a single process without it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from robostack.errors import RobostackError


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The rank that writes checkpoints, logs and reports."""
        return self.rank == 0


def setup_distributed(device: str) -> Ranks:
    """This process's rank, the world size and its device (``cpu``, ``cuda`` or ``cuda:N``; under torchrun each rank
    takes the GPU of its ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RobostackError("device cuda requested but torch sees no CUDA GPU")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return Ranks(rank, world, torch.device(f"cuda:{local}" if world > 1 else device))
    return Ranks(rank, world, torch.device("cpu"))


def record_ranks_in_sync(run: Path, parameters: list[torch.Tensor], ranks: Ranks) -> None:
    """Write ``ddp.json``: every rank's parameter checksum, and whether they agree (what averaging gradients
    promises)."""
    checksum = torch.tensor([float(sum(p.detach().double().sum() for p in parameters))], dtype=torch.float64)
    gathered = [torch.zeros_like(checksum) for _ in range(ranks.world)]
    dist.all_gather(gathered, checksum)
    if ranks.is_main:
        sums = [float(g) for g in gathered]
        (run / "ddp.json").write_text(
            json.dumps({"world_size": ranks.world, "param_checksums": sums, "in_sync": len(set(sums)) == 1})
        )


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()
