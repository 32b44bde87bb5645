"""The machine a run uses: its device, the CPUs it may use, clocks and peak memory."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys
from pathlib import Path

import torch

from ohemcli.errors import UserError


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; all of them where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """Torch threads of each of ``jobs`` CPU jobs side by side: its share of the cores.

    ``OMP_NUM_THREADS``, when set, caps the share. CPU runs give bit-identical results only at
    equal thread counts, so ``OMP_NUM_THREADS=1`` makes a compare's numbers the same on a
    2-core laptop and a 64-core server.
    """
    share = max(1, available_cpus() // max(1, jobs))
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device: unknown '{name}' (choose auto, cpu or cuda)")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU. Call before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_workers(requested: int) -> int:
    """DataLoader workers: at most the CPUs this process may run on (PyTorch warns above that)."""
    return max(0, min(requested, available_cpus()))


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak: CUDA's allocator counter, or the process's VmHWM on Linux."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS


def _status_mb(field: str) -> float | None:
    """A memory line (``VmHWM``, ``VmRSS``) of Linux's /proc/self/status in MiB; None elsewhere."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(x for x in status if x.startswith(f"{field}:")).split()[1]) / 1024  # kB
    return None


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or the process's peak resident memory on the CPU, in MiB.

    On Linux the CPU figure is VmHWM, which :func:`reset_peak_memory` resets per run; elsewhere it
    is the process's lifetime peak.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``), so that resident
    memory read next counts what is in use, not what earlier work freed; a no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).malloc_trim(0)


def memory_in_use_mb(device: torch.device) -> float:
    """Memory in use now, in MiB: CUDA's allocated bytes, or the process's resident memory
    (VmRSS) on Linux; 0 where neither can be read (a peak then counts from 0)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    rss = _status_mb("VmRSS")
    return 0.0 if rss is None else rss


def rank_autocast(device: torch.device, rank_dtype: str) -> contextlib.AbstractContextManager:
    """The precision of the ranking passes (``sampler.rank_dtype``), whatever autocast the
    caller runs them in: float32 turns autocast off for the block (under ``--amp`` the read-only
    pass runs inside the training autocast, and would otherwise rank in bf16); bfloat16
    autocasts their layers (the RoI pooling stays float32, see
    ``ohemcli.model.fast_rcnn.FastRCNN.pool``).

    Either way the autocast weight cache is off for the block: a no-grad pass inside an
    autocast with its cache on leaves cast weights without autograd history in the cache, and
    the training forward that follows in the same autocast then gives the head no gradients
    (pytorch#112583; fixed in torch's cache logic only in later releases than our floor).
    """
    if rank_dtype == "float32":
        return torch.autocast(device.type, enabled=False, cache_enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def set_tf32(on: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions on (``train.tf32``) or off, both switches,
    so that a run's precision is what its config says and not cuDNN's default (TF32 on)."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
