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
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ohemcli.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = 0.0  # the process group's timeout (train.dist_timeout_s); 0: none

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files."""
        return self.rank == 0


def init_distributed(device_kind: str, timeout_s: float = 3600.0) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; a single process otherwise.

    ``timeout_s`` (``train.dist_timeout_s``) bounds every wait for another rank: rank 0's
    evaluation, and a rank that failed alone. NCCL's own default is 10 minutes, shorter than a
    first VOC07 evaluation.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device_kind == "cuda" else "gloo",
            timeout=timedelta(seconds=timeout_s),
        )
    info = DistInfo(
        dist.get_rank(),
        dist.get_world_size(),
        int(os.environ.get("LOCAL_RANK", 0)),
        timeout_s,
    )
    if device_kind == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


BUCKET_BYTES = 25 * 2**20  # DDP's default bucket: few collectives, each large enough to stream


def gradient_buckets(
    grads: list[torch.Tensor], bucket_bytes: int = BUCKET_BYTES
) -> list[list[int]]:
    """Positions of ``grads`` grouped into buckets of one dtype and device, in order, each up to
    ``bucket_bytes`` (a larger gradient gets a bucket of its own)."""
    buckets: list[list[int]] = []
    size, key = 0, None
    for i, g in enumerate(grads):
        nbytes = g.numel() * g.element_size()
        if not buckets or (g.dtype, g.device) != key or size + nbytes > bucket_bytes:
            buckets.append([])
            size, key = 0, (g.dtype, g.device)
        buckets[-1].append(i)
        size += nbytes
    return buckets


def average_gradients(model: nn.Module, info: DistInfo) -> None:
    """Average every parameter's gradient over the ranks (no-op in a single process): one
    all-reduce per bucket of flattened gradients (:func:`gradient_buckets`), not one per
    parameter, since each collective pays a fixed launch and network latency."""
    if info.world_size <= 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    for bucket in gradient_buckets(grads):
        flat = torch.cat([grads[i].reshape(-1) for i in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(info.world_size)
        offset = 0
        for i in bucket:
            n = grads[i].numel()
            grads[i].copy_(flat[offset : offset + n].view_as(grads[i]))
            offset += n


def broadcast_parameters(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's weights to every rank, so all start identical."""
    if info.world_size <= 1:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def _timed_out(info: DistInfo, what: str) -> UserError:
    """The one-line error of a rank that waited ``info.timeout_s`` for the others in ``what``."""
    return UserError(
        f"train.dist_timeout_s: rank {info.rank} waited {info.timeout_s:g} s for the other ranks "
        f"({what}) and gave up; another rank failed or is still busy (raise train.dist_timeout_s "
        "for a long evaluation)"
    )


def barrier(info: DistInfo, what: str = "barrier") -> None:
    """Wait for every rank (no-op in a single process); a rank that waits past the group's
    timeout, or whose peer died, stops with one line instead of a traceback."""
    if info.world_size <= 1:
        return
    try:
        dist.barrier()
    except RuntimeError:  # gloo and NCCL report a timeout or a dead peer as RuntimeError
        raise _timed_out(info, what) from None


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (one small all-reduce); the
    local flag in a single process (no sync)."""
    if info.world_size <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    try:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    except RuntimeError:
        raise _timed_out(info, "agreeing on a flag") from None
    return bool(t.item())


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` alone."""
    if info.world_size <= 1:
        return [obj]
    out: list[Any] = [None] * info.world_size
    try:
        dist.all_gather_object(out, obj)
    except RuntimeError:
        raise _timed_out(info, "gathering states") from None
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank; ``obj`` itself in a single process."""
    if info.world_size <= 1:
        return obj
    box = [obj]
    try:
        dist.broadcast_object_list(box, src=0)
    except RuntimeError:
        raise _timed_out(info, "hearing from rank 0") from None
    return box[0]


# Each rank's seeds are the run's seed plus this prime times its rank: rank 0 keeps the run's
# seed (a one-process run and rank 0 draw alike), and rank r of seed s never meets seed s + r.
RANK_SEED_STRIDE = 1_000_003


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank`` of a run seeded ``seed``."""
    return seed + RANK_SEED_STRIDE * rank


def seed_rank(gen: torch.Generator, seed: int, info: DistInfo) -> None:
    """Give this rank its own sampling generator and global seed (dropout masks): call it after
    the weights are broadcast, so that every rank starts from rank 0's weights but draws its own
    RoIs and masks. A no-op in a single process (and on rank 0, which keeps ``seed``)."""
    if info.world_size <= 1 or info.rank == 0:
        return
    gen.manual_seed(rank_seed(seed, info.rank))
    torch.manual_seed(rank_seed(seed, info.rank))
