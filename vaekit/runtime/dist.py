"""Distributed data parallel, a thin layer: launched by torchrun (RANK in the environment) ->
one process group; otherwise a single process and every function here is a no-op."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group torchrun described (NCCL on CUDA,
    gloo on CPU)."""
    if "RANK" not in os.environ:
        return 0, 1, 0
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, world, local


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks, in place (a no-op in one process)."""
    if active():
        dist.all_reduce(t)
    return t


def barrier() -> None:
    if active():
        dist.barrier()


def cleanup() -> None:
    if active():
        dist.destroy_process_group()
