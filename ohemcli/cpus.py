"""The CPUs this process may use, and the threads each of several local jobs gets."""

from __future__ import annotations

import os


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
