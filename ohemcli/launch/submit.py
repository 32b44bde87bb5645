"""The runs of a compare as submitit jobs: K at once on this machine, or on a Slurm cluster.

Local (``--jobs K``): K jobs of submitit's LocalExecutor, each training its share of the runs one
after another, with its own GPUs (``CUDA_VISIBLE_DEVICES``) or, on the CPU, its share of the cores
(``torch.set_num_threads``). Slurm: one job per run, as a job array that runs at most K at once.
A job with G GPUs runs G tasks that train one run together under DDP.

The run folders stay the only record of progress. submitit keeps its own job files and logs in
``OUT/.submitit``; a repeat of the same command reads them only to leave alone the runs whose jobs
are still alive, and submits the rest of the unfinished runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ohemcli.config import ExperimentConfig
from ohemcli.device import threads_per_job
from ohemcli.errors import UserError, quote
from ohemcli.launch.grid import (
    CompareOutcome,
    RunFailure,
    RunSpec,
    failure_line,
    is_finished,
    train_run,
)
from ohemcli.runs.paths import ComparePaths

FAILED_TAG = "ohem-run-failed"  # a job's log line for a run that raised: "<tag> <run>: <error>"
LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # local jobs have no time limit of their own; submitit wants one


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


def check_launcher(launch: Launch) -> None:
    """Refuse a launcher that this machine cannot use (Slurm without its commands)."""
    if launch.launcher == "slurm" and shutil.which("srun") is None:
        raise UserError("--launcher slurm: srun not found; run ohem compare on a Slurm login node")


def _executor(launch: Launch, folder: Path, cuda: bool) -> submitit.AutoExecutor:
    """submitit's executor with the launch's parameters (Slurm ones reach sbatch)."""
    check_launcher(launch)
    executor = submitit.AutoExecutor(folder=folder, cluster=launch.launcher)
    gpus = launch.gpus_per_run if cuda else 0
    params: dict[str, Any] = {
        "name": "ohem-compare",
        "gpus_per_node": gpus,
        "tasks_per_node": max(1, gpus),  # DDP: one task per GPU
        "timeout_min": launch.slurm_time if launch.launcher == "slurm" else LOCAL_TIMEOUT_MIN,
    }
    if launch.launcher == "slurm":
        params.update(
            slurm_partition=launch.slurm_partition,
            slurm_account=launch.slurm_account,
            slurm_constraint=launch.slurm_constraint,
            slurm_mem=launch.slurm_mem,
        )
        if launch.jobs is not None:
            params["slurm_array_parallelism"] = launch.jobs
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def _slots(todo: Sequence[RunSpec], jobs: int) -> list[list[RunSpec]]:
    """The runs dealt round-robin to at most ``jobs`` local jobs (in run order)."""
    k = min(jobs, len(todo))
    return [list(todo[j::k]) for j in range(k)]


def _package_path() -> dict[str, str]:
    """PYTHONPATH that makes jobs import this very ohemcli (a source tree, not another install)."""
    import ohemcli

    root = str(Path(ohemcli.__file__).resolve().parents[1])
    rest = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": root + (os.pathsep + rest if rest else "")}


def submit(
    base: ExperimentConfig, todo: Sequence[RunSpec], out_dir: Path, launch: Launch, cuda: bool
) -> list[SubmittedJob]:
    """Submit the runs of ``todo``: local slot jobs, or one Slurm job per run in one array."""
    folder = ComparePaths(Path(out_dir)).submitit
    if not todo:
        return []
    executor = _executor(launch, folder, cuda)
    with submitit.helpers.environment_variables(**_package_path()):
        if launch.launcher == "slurm":
            with _sbatch_refusal(), executor.batch():
                jobs = [executor.submit(RunsJob(base, [run], None)) for run in todo]
            return [
                SubmittedJob(j.job_id, [r], folder, j, "slurm")
                for j, r in zip(jobs, todo, strict=True)
            ]
        return _submit_local(executor, base, todo, launch, cuda)


@contextlib.contextmanager
def _sbatch_refusal() -> Iterator[None]:
    """sbatch's refusal of the job (a bad partition, account, time) as one line naming it.

    submitit prints sbatch's stderr and raises ``FailedJobError`` with a traceback of 70 lines;
    what the user needs is sbatch's own first error line.
    """
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            yield
    except submitit.core.utils.FailedJobError as exc:
        lines = [s.strip() for s in f"{exc}\n{stderr.getvalue()}".splitlines() if s.strip()]
        said = next((s for s in lines if "error" in s.lower()), lines[0] if lines else "no reason")
        raise UserError(f"--launcher slurm: sbatch refused the jobs: {quote(said)[1:-1]}") from None
    sys.stderr.write(stderr.getvalue())  # a submission that went through hides nothing


def _submit_local(
    executor: submitit.AutoExecutor,
    base: ExperimentConfig,
    todo: Sequence[RunSpec],
    launch: Launch,
    cuda: bool,
) -> list[SubmittedJob]:
    """One local job per slot, with its own GPUs, or on the CPU its share of the cores."""
    gpus = visible_gpus() if cuda else []
    slots = _slots(todo, launch.jobs or 1)
    g = launch.gpus_per_run
    if cuda and len(slots) * g > len(gpus):
        raise UserError(
            f"--jobs {len(slots)} x --gpus-per-run {g} needs {len(slots) * g} GPUs; "
            f"{len(gpus)} visible"
        )
    threads = None if cuda else threads_per_job(len(slots))
    handles = []
    with detached_jobs():
        for j, runs in enumerate(slots):
            if cuda:
                executor.update_parameters(local_visible_gpus=tuple(gpus[j * g : (j + 1) * g]))
            job = executor.submit(RunsJob(base, runs, threads))
            handles.append(SubmittedJob(job.job_id, runs, executor.folder, job, "local"))
    return handles


@contextlib.contextmanager
def detached_jobs() -> Iterator[None]:
    """Local jobs started in the block get a session of their own.

    submitit starts each local job's controller as a child in the terminal's process group, so
    Ctrl-C in the terminal reached the jobs too: they died printing tracebacks while ``compare``
    said they were still under way. In their own session they keep training after Ctrl-C (and
    after the terminal closes), which is what the message says; ``kill`` of their pid stops them.
    submitit has no option for it, so its module's ``subprocess.Popen`` is wrapped here, only
    while the block runs (submission happens in this one thread).
    """
    import functools
    import types

    import submitit.local.local as local

    real = local.subprocess
    wrapped = types.SimpleNamespace(**vars(real))
    wrapped.Popen = functools.partial(real.Popen, start_new_session=True)
    local.subprocess = wrapped  # type: ignore[assignment]  # patched for this block only
    try:
        yield
    finally:
        local.subprocess = real


def failure_of(run: RunSpec, handle: SubmittedJob | None) -> RunFailure:
    """The failure row of an unfinished run whose job ended: its error line, else the log's end."""
    lines: list[str] = []
    if handle is not None and handle.log().is_file():
        lines = [s.strip() for s in handle.log().read_text("utf-8", "replace").splitlines()]
    tagged = [s for s in lines if s.startswith(f"{FAILED_TAG} {run.name}: ")]
    if tagged:
        return RunFailure(run.name, run.path, "failed", tagged[-1].split(": ", 1)[1])
    last = next((s for s in reversed(lines) if s), "(empty log)")
    return RunFailure(run.name, run.path, "killed", last)  # ended without a word: killed


def launch_runs(
    base: ExperimentConfig,
    plan: Sequence[RunSpec],
    out_dir: Path,
    launch: Launch,
    show_progress: bool = True,
    submitted: Callable[[], None] | None = None,
) -> CompareOutcome:
    """Submit the unfinished runs that no live job trains; watch them unless ``--no-wait``.

    ``submitted`` is called once the jobs are submitted, before watching (``compare`` releases
    the compare folder's lock there).
    """
    from ohemcli.launch.watch import watch

    iters = base.train.iters
    cuda = wants_cuda(base, launch.launcher)
    launch = resolve_jobs(launch, base)
    folder = ComparePaths(Path(out_dir)).submitit
    alive = alive_jobs(folder, launch.launcher) if folder.is_dir() else []
    busy = {r.name for h in alive for r in h.runs}
    todo = [r for r in plan if not is_finished(r.path, iters) and r.name not in busy]
    if todo and launch.launcher == "local":  # a Slurm login node is no place for selective search
        from ohemcli.data.splits import prepare_data

        prepare_data(base, show_progress)
    handles = alive + submit(base, todo, out_dir, launch, cuda)
    if submitted is not None:
        submitted()
    if not launch.wait:
        return CompareOutcome(list(plan), pending=[r for h in handles for r in h.runs])
    interrupted = watch(plan, handles, iters, show_progress)
    if interrupted:
        waiting = [r for h in handles if not h.done() for r in h.runs]
        return CompareOutcome(list(plan), pending=waiting)
    owner = {r.name: h for h in handles for r in h.runs}
    failures = [
        failure_of(r, owner.get(r.name))
        for r in plan
        if not is_finished(r.path, iters) and r.name in owner
    ]
    return CompareOutcome(list(plan), failures=failures)


def wants_cuda(base: ExperimentConfig, launcher: str) -> bool:
    """True when the runs train on CUDA: ``cuda``, or ``auto`` with a GPU here or on Slurm.

    A Slurm login node often has no GPU; the jobs land on GPU nodes, so ``auto`` asks for GPUs.
    """
    import torch

    device = base.train.device
    auto_cuda = launcher == "slurm" or torch.cuda.is_available()
    return device == "cuda" or (device == "auto" and auto_cuda)
