"""One progress line per run of a launched compare, read from the run folders while jobs run.

The jobs are other processes (or other machines), so nothing calls back into this one: the lines
follow each run's ``metrics.jsonl`` and ``summary.json``, which are the record of its progress.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from ohemcli.launch.grid import RunSpec, is_finished, logged_iter
from ohemcli.progress import err_console, make_progress


class WatchedJob(Protocol):
    """What the watcher needs of a submitted job (``launch.jobs.SubmittedJob``); a protocol, so
    that this module does not import the launcher that imports it."""

    job_id: str
    runs: list[RunSpec]

    def done(self) -> bool: ...


POLL_S = 1.0


def run_state(run: RunSpec, handle: WatchedJob | None, iters: int, job_done: bool) -> str:
    """``finished``, ``running``, ``queued`` (its job trains other runs first) or ``ended``."""
    if is_finished(run.path, iters):
        return "finished"
    if handle is None or job_done:
        return "ended"
    for other in handle.runs:  # a job trains its runs in order: the first unfinished one runs
        if not is_finished(other.path, iters):
            return "running" if other == run else "queued"
    return "running"


def watch(
    plan: Sequence[RunSpec], handles: Sequence[WatchedJob], iters: int, show_progress: bool
) -> bool:
    """Show a line per run (state, iteration, ETA) until every job has ended.

    Returns True when interrupted (Ctrl-C): the jobs keep their run folders and can be collected
    later by the same command or by ``ohem report``.
    """
    owner = {r.name: h for h in handles for r in h.runs}
    with make_progress(disable=not show_progress) as progress:
        tasks = {
            r.name: progress.add_task(r.name, total=iters, completed=logged_iter(r.path))
            for r in plan
        }
        try:
            while True:
                done = {h.job_id: h.done() for h in handles}
                for run in plan:
                    handle = owner.get(run.name)
                    ended = handle is None or done[handle.job_id]
                    state = run_state(run, handle, iters, ended)
                    completed = iters if state == "finished" else logged_iter(run.path)
                    progress.update(
                        tasks[run.name], completed=completed, description=f"{run.name} {state}"
                    )
                if all(done.values()):
                    return False
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            err_console.print(
                "stopped watching; the jobs keep training in the background (their own "
                "session: Ctrl-C does not reach them) and keep their run folders"
            )
            return True
