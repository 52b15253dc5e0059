"""Data-parallel training under torchrun: the process group and the gradient average.

`torchrun --nproc_per_node=N -m sciscore train ...` (or `srun` with torchrun's variables) starts N
processes; each finds its rank in RANK / WORLD_SIZE / LOCAL_RANK. The global batch (--batch-size)
is split into N equal shares; after the backward pass the gradients are averaged over the ranks
(one all-reduce of the flattened gradients), so every rank takes the same optimizer step as one
process with the whole batch, up to the order of floating-point summation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sciscore.errors import UserError


@dataclass(frozen=True)
class ProcessGroup:
    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return int(environ.get("WORLD_SIZE", "1") or 1) > 1


def init_from_environment(device_type: str) -> ProcessGroup:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU), once; the CLI calls this."""
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise UserError("WORLD_SIZE > 1 but RANK is missing or not an integer; launch with torchrun "
                        "(or set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)") from None
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank)


def average_gradients(parameters, world_size: int) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of the flattened
    gradients). Every rank runs the same graph, so the same parameters have gradients."""
    if world_size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def average(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of `tensor` over the ranks."""
    if world_size == 1:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / world_size
