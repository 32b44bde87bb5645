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
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
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
    is_finished,
)
from ohemcli.launch.jobs import FAILED_TAG, RunsJob, SubmittedJob, alive_jobs
from ohemcli.launch.options import Launch, resolve_jobs, visible_gpus, wants_cuda
from ohemcli.runs.paths import ComparePaths

__all__ = ["Launch", "check_launcher", "launch_runs"]  # Launch: cli/compare.py names it from here

LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # local jobs have no time limit of their own; submitit wants one


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
