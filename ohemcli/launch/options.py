"""How a compare starts its runs: :class:`Launch` (the launcher options of ``ohem compare``),
their checks, and the GPUs and job count they resolve to on this machine."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ohemcli.config import ExperimentConfig
from ohemcli.errors import UserError, quote


@dataclass(frozen=True)
class Launch:
    """How ``compare`` starts its runs (the ``launcher`` options of ``ohem compare``)."""

    launcher: str = "local"  # "local" or "slurm"
    jobs: int | None = None  # runs at once (None: 1 on the CPU, one per G visible GPUs)
    gpus_per_run: int = 1  # G: GPUs of one run (DDP with one task per GPU when G > 1)
    wait: bool = True  # False: submit and return (--no-wait)
    slurm_partition: str | None = None
    slurm_time: int = 24 * 60  # minutes per job; a timed-out job is requeued and resumes
    slurm_account: str | None = None
    slurm_constraint: str | None = None
    slurm_mem: str | None = None  # e.g. "64G"

    @property
    def in_process(self) -> bool:
        """Local, one run at a time, waited for: train in this process (no submitit)."""
        return self.launcher == "local" and self.jobs == 1 and self.wait


MAX_SLURM_MINUTES = 365 * 24 * 60  # --slurm-time: beyond a year is a typo, not a time limit
# What Slurm accepts for each option (names, comma lists; constraints add their operators).
# Anything else, a space or a newline above all, would be written into the #SBATCH lines.
_SLURM_VALUES = {
    "slurm_partition": ("--slurm-partition", r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*"),
    "slurm_account": ("--slurm-account", r"[A-Za-z0-9_.\-]+"),
    "slurm_constraint": ("--slurm-constraint", r"[A-Za-z0-9_.\-:&|*!\[\]()]+"),
    "slurm_mem": ("--slurm-mem", r"[1-9][0-9]*[KMGT]?"),
}


def check_launch(launch: Launch) -> None:
    """Refuse launcher options that cannot be right, before anything is written or submitted."""
    if launch.launcher not in ("local", "slurm"):
        raise UserError(f"--launcher {quote(launch.launcher)}: expected local or slurm")
    if launch.jobs is not None and launch.jobs < 1:
        raise UserError(f"--jobs: must be at least 1, got {launch.jobs}")
    if launch.gpus_per_run < 1:
        raise UserError(f"--gpus-per-run: must be at least 1, got {launch.gpus_per_run}")
    if not 1 <= launch.slurm_time <= MAX_SLURM_MINUTES:
        raise UserError(
            f"--slurm-time {launch.slurm_time}: minutes per job, from 1 to {MAX_SLURM_MINUTES}"
        )
    for field, (option, pattern) in _SLURM_VALUES.items():
        value = getattr(launch, field)
        if value is not None and not re.fullmatch(pattern, value):
            raise UserError(f"{option} {quote(value)}: not a value Slurm accepts")


def resolve_jobs(launch: Launch, base: ExperimentConfig) -> Launch:
    """``jobs`` filled in: 1 on the CPU, visible GPUs // G on CUDA (Slurm: no limit, None)."""
    check_launch(launch)
    cuda = wants_cuda(base, launch.launcher)
    if launch.jobs is not None or launch.launcher == "slurm":
        return launch
    jobs = max(1, len(visible_gpus()) // launch.gpus_per_run) if cuda else 1
    return Launch(**{**launch.__dict__, "jobs": jobs})


def visible_gpus() -> list[int]:
    """Host indices of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` or all)."""
    import torch

    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(v) for v in env.split(",") if v.strip().isdigit()]
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def wants_cuda(base: ExperimentConfig, launcher: str) -> bool:
    """True when the runs train on CUDA: ``cuda``, or ``auto`` with a GPU here or on Slurm.

    A Slurm login node often has no GPU; the jobs land on GPU nodes, so ``auto`` asks for GPUs.
    """
    import torch

    device = base.train.device
    auto_cuda = launcher == "slurm" or torch.cuda.is_available()
    return device == "cuda" or (device == "auto" and auto_cuda)
