"""torchrun / DDP helpers (a submitit job joins through ``launch.job_env``).

Under ``torchrun`` every rank trains on its own N images per iteration (the global batch is N x W
images) and gradients are averaged with one all-reduce per parameter after backward. We average
by hand rather than wrapping the model in DistributedDataParallel because a Fast R-CNN step calls
the model several times (features, the read-only pass, the RoI head), and DDP only hooks
``forward``. Only rank 0 writes logs, checkpoints and evaluations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files."""
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; a single process otherwise."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device_kind == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def average_gradients(model: nn.Module, info: DistInfo) -> None:
    """Average every parameter's gradient over the ranks (no-op in a single process)."""
    if info.world_size <= 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(info.world_size)


def broadcast_parameters(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's weights to every rank, so all start identical."""
    if info.world_size <= 1:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.world_size > 1:
        dist.barrier()
