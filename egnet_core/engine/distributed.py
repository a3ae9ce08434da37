"""Process-group set-up for ``torchrun``: NCCL on GPUs, Gloo on CPUs; one process is the whole world otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from egnet_core.deploy.options import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str, *, timeout: timedelta | None = None) -> DistributedContext:
    """Join the process group ``torchrun`` describes in its environment, or run alone without one. ``timeout``:
    how long a collective waits for the slowest process (torch's default, 30 minutes for Gloo, where None)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext(rank=0, world_size=1, device=resolve_device(device))
    local_rank = int(os.environ["LOCAL_RANK"])
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, **({} if timeout is None else {"timeout": timeout}))
    return DistributedContext(rank=dist.get_rank(), world_size=world_size, device=chosen)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_across_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over all processes (the values themselves without a process group)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def gather_to_main(value: Any) -> list[Any] | None:
    """Every process's ``value`` (picklable), in rank order, on rank 0; None on the other ranks. Without a
    process group: ``[value]``."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
