"""submitit jobs of a compare: :class:`RunsJob` (what a job runs) and :class:`SubmittedJob`
(a job seen from outside: alive or done, its log), with the jobs of earlier calls found again."""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ohemcli.config import ExperimentConfig
from ohemcli.launch.grid import RunSpec, failure_line, is_finished, train_run

FAILED_TAG = "ohem-run-failed"  # a job's log line for a run that raised: "<tag> <run>: <error>"


class RunsJob(submitit.helpers.Checkpointable):
    """One submitit job: train its runs one after another (each resumes from its checkpoint).

    On preemption or time-out submitit calls :meth:`checkpoint`, which requeues this same job;
    ``train(resume=True)`` then continues every unfinished run from its last checkpoint.
    """

    def __init__(self, base: ExperimentConfig, runs: Sequence[RunSpec], threads: int | None):
        self.base, self.runs, self.threads = base, list(runs), threads

    def __call__(self) -> list[str]:
        """Train the runs; raise at the end when any failed (the others still train)."""
        import torch

        from ohemcli.launch.job_env import export_submitit_env

        export_submitit_env()
        if self.threads:
            torch.set_num_threads(self.threads)
        failed = []
        for run in self.runs:
            if is_finished(run.path, self.base.train.iters):
                continue
            try:
                train_run(self.base, run, show_progress=False)
            except Exception as exc:  # noqa: BLE001 - one run's failure must not stop the others
                line = failure_line(exc)
                print(f"{FAILED_TAG} {run.name}: {line}", file=sys.stderr, flush=True)
                failed.append(run.name)
        if failed:
            raise RuntimeError(f"runs failed: {', '.join(failed)}")
        return [r.name for r in self.runs]

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue the same runs; each continues from the checkpoint its run folder holds."""
        return submitit.helpers.DelayedSubmission(RunsJob(self.base, self.runs, self.threads))


@dataclass
class SubmittedJob:
    """A submitted job (this call's or an earlier one's still alive) and the runs it trains."""

    job_id: str
    runs: list[RunSpec]
    folder: Path
    job: Any = None  # submitit Job when submitted by this call
    cluster: str = "local"

    def done(self) -> bool:
        """True once the job has ended (finished, failed or killed)."""
        if self.job is not None:
            return bool(self.job.done())
        if self.cluster == "local":
            return not _local_alive(self.job_id)
        return submitit.SlurmJob(self.folder, self.job_id).state not in _SLURM_ALIVE

    def log(self) -> Path:
        """The job's stderr log (task 0)."""
        return self.folder / f"{self.job_id}_0_log.err"


_SLURM_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED"}


def _local_alive(pid: str) -> bool:
    """Is the local submitit controller with this pid still running?"""
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit" in cmdline


def alive_jobs(folder: Path, cluster: str) -> list[SubmittedJob]:
    """Jobs of earlier calls (``folder/*_submitted.pkl``) that are still alive."""
    found = []
    for path in sorted(Path(folder).glob("*_submitted.pkl")):
        job_id = path.name[: -len("_submitted.pkl")]
        with contextlib.suppress(Exception):  # another program's or a half-written pickle
            with open(path, "rb") as f:
                delayed = pickle.load(f)  # noqa: S301 - submitit's own files, written by us
            fn = delayed.function
            if isinstance(fn, RunsJob):
                handle = SubmittedJob(job_id, fn.runs, Path(folder), cluster=cluster)
                if not handle.done():
                    found.append(handle)
    return found
