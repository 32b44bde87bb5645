"""Run the (sampler, seed) grid of a comparison: in this process one after another, or as jobs.

Layout of a compare folder::

    OUT/compare.yaml                 samplers, seeds and the base config (guards against mixing;
                                     the samplers and seeds of every request, one config)
    OUT/runs/<sampler>-s<seed>/      one run folder each (see engine.train)
    OUT/.submitit/                   submitit's job files and logs (launched runs only)

Every run differs from the others only in ``sampler.name`` (and ``train.seed``): the same seed
gives the same initial weights and image order. The run folders are the only record of what is
done: a finished run (``RunPaths.finished_summary``) is reused, an interrupted one continues from
its checkpoint. ``report/`` turns the finished folders into tables and plots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ohemcli.config import ExperimentConfig, config_from_dict, config_to_dict
from ohemcli.data.fingerprint import data_fingerprint, require_same_data
from ohemcli.errors import UserError, quote
from ohemcli.fileio import atomic_write_text
from ohemcli.launch.grid import (
    CompareOutcome,
    RunFailure,
    RunSpec,
    done_iters,
    failure_line,
    is_finished,
    plan_runs,
    run_config,
    train_run,
)
from ohemcli.progress import make_progress, styled
from ohemcli.runs.guard import check_finished, check_out_dir, compare_lock
from ohemcli.runs.paths import ComparePaths, RunPaths, folder_name
from ohemcli.runs.settings import comparable_config, first_difference, read_settings

if TYPE_CHECKING:
    from ohemcli.launch.options import Launch

COMPARE_EVAL_POINTS = 8  # default evaluations per compare run: enough for time to accuracy


def compare_eval_points(cfg: ExperimentConfig, out_dir: Path, given: bool) -> ExperimentConfig:
    """The evaluations of a compare's runs when not ``given``: a compare folder being resumed
    keeps its own count; a new one evaluates at least ``COMPARE_EVAL_POINTS`` times (time to
    accuracy interpolates between them)."""
    if given:
        return cfg
    settings = ComparePaths(Path(out_dir)).settings
    saved = read_settings(settings) if settings.is_file() else None
    points = ((saved or {}).get("config") or {}).get("train", {}).get("eval_points")
    if not isinstance(points, int):
        points = max(cfg.train.eval_points, COMPARE_EVAL_POINTS)
    return replace(cfg, train=replace(cfg.train, eval_points=points))


def _settings(
    base: ExperimentConfig, samplers: Sequence[str], seeds: Sequence[int], fingerprint: Any
) -> dict[str, Any]:
    settings = {
        "samplers": list(samplers),
        "seeds": [int(s) for s in seeds],
        "config": config_to_dict(base),
    }
    if fingerprint is not None:
        settings["data_fingerprint"] = fingerprint
    return settings


def _union(saved: Any, new: Sequence[Any]) -> list[Any]:
    """The saved list, then the new items it lacks, in order."""
    kept = list(saved) if isinstance(saved, list) else []
    return kept + [x for x in new if x not in kept]


def check_folder_names(samplers: Sequence[str], where: str = "--samplers") -> None:
    """Refuse two samplers whose run folders would be one (``m:A_B`` and ``m_A:B`` both become
    ``m_A_B``): the second would find the first's run and never train."""
    seen: dict[str, str] = {}
    for name in samplers:
        other = seen.setdefault(folder_name(name), name)
        if other != name:
            raise UserError(
                f"{where}: {quote(other)} and {quote(name)} would share the run folder "
                f"{quote(folder_name(name))}; compare them in separate --out folders"
            )


def say_budget_notes(base: ExperimentConfig, samplers: Sequence[str]) -> None:
    """One line on stderr per sampler whose reference regime replaces the config's budget
    (``samplers.regime.budget_note``), before any run starts."""
    from ohemcli.progress import err_console
    from ohemcli.samplers.regime import budget_note

    for name in samplers:
        note = budget_note(replace(base, sampler=replace(base.sampler, name=name)))
        if note is not None:
            err_console.print(note, highlight=False, soft_wrap=True)


def check_request(samplers: Sequence[str], seeds: Sequence[int]) -> None:
    """Each sampler known and given once, no two sharing a run folder; each seed given once and
    allowed as ``train.seed``."""
    from ohemcli.config_rules import check_value
    from ohemcli.samplers import check_sampler_names

    check_sampler_names(samplers)
    if not samplers or len(set(samplers)) != len(samplers):
        raise UserError(f"--samplers: give each sampler once, got {','.join(samplers) or 'none'}")
    check_folder_names(samplers)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: give each seed once, got {','.join(map(str, seeds)) or 'none'}")
    for seed in seeds:
        allowed = check_value("train.seed", seed)
        if allowed is not None:
            raise UserError(
                f"--seeds: train.seed = {quote(seed)} is not allowed; expected {allowed}"
            )


def check_settings(
    out_dir: Path,
    base: ExperimentConfig,
    samplers: Sequence[str],
    seeds: Sequence[int],
    fingerprint: Any = None,
) -> None:
    """Write ``OUT/compare.yaml``: a folder may grow by samplers and seeds under one config.

    Once a run of the folder has started, the request's config (less sampler name and seed,
    ``runs.settings.comparable_config``) must be the folder's; compare.yaml then records the
    union of the samplers and seeds, so that finished runs are reused and only new ones train.
    Another config is refused, naming the first key that differs, and so is data whose
    ``fingerprint`` (``data.fingerprint.data_fingerprint``) differs from the recorded one, naming
    what changed: new runs would be paired with runs of other boxes. Before any run has started
    the request simply replaces the settings.
    """
    check_request(samplers, seeds)
    folder = ComparePaths(Path(out_dir))
    settings = _settings(base, samplers, seeds, fingerprint)
    if folder.settings.is_file() and folder.any_checkpoint():
        saved = read_settings(folder.settings)
        diff = first_difference(
            comparable_config(_as_loaded(saved.get("config") or {}, folder.settings)),
            comparable_config(_as_loaded(settings["config"], folder.settings)),
        )
        if diff is not None:
            key, was, now = diff
            raise UserError(
                f"{folder.settings} has {key} = {quote(was)}, this command {quote(now)}; a "
                "compare folder grows only by samplers and seeds: choose another --out"
            )
        if fingerprint is not None:
            require_same_data(
                saved.get("data_fingerprint"), fingerprint, folder.settings,
                "the folder's runs trained",
                "a compare folder grows only over the same data: choose another --out",
            )  # fmt: skip
        settings["samplers"] = _union(saved.get("samplers"), settings["samplers"])
        check_folder_names(settings["samplers"], str(folder.settings))
        settings["seeds"] = _union(saved.get("seeds"), settings["seeds"])
        if settings == saved:
            return
    atomic_write_text(folder.settings, yaml.safe_dump(settings, sort_keys=False))


def _as_loaded(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """A saved config as loading it gives it today: keys added since it was written take their
    defaults (or the values they are derived from, such as model.input_norm), and old values
    their present spelling (``model.pretrained: true``). A config that no longer loads stays as
    written, and the comparison names what differs."""
    try:
        return config_to_dict(config_from_dict(config, str(where)))
    except UserError:
        return config


def _advancer(progress: Any, task: Any, done: int, first: int) -> Callable[[dict[str, Any]], None]:
    """A ``train`` callback that moves the overall bar to ``done`` + the run's new iterations."""

    def advance(record: dict[str, Any]) -> None:
        if record["kind"] == "metrics":
            progress.update(task, completed=done + max(0, record["iter"] - first))

    return advance


def _failure(run: RunSpec, exc: BaseException) -> RunFailure:
    return RunFailure(run.name, run.path, "failed", failure_line(exc))


def train_in_process(
    base: ExperimentConfig, plan: Sequence[RunSpec], show_progress: bool = True
) -> list[RunFailure]:
    """Train the unfinished runs of ``plan`` one after another; a failed run lets the next go on.

    Any error of one run, a ``UserError`` included (its corrupt checkpoint, its unwritable
    folder), is that run's failure, as in a launched job (``launch.jobs.RunsJob``): the others
    still train and the caller names the failed runs. Errors that every run would share (data,
    config) are checked before the first run starts. The overall bar counts the iterations still
    to train, fed by ``train``'s callback.
    """
    iters = base.train.iters
    start = {r: done_iters(r.path, iters) for r in plan}
    failures: list[RunFailure] = []
    total = sum(iters - v for v in start.values()) or 1
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("compare", total=total)
        done = 0
        for k, run in enumerate(plan, start=1):
            name = f"run {k}/{len(plan)}: {run.sampler} seed {run.seed}"
            if is_finished(run.path, iters):
                if show_progress:
                    progress.console.print(f"{name}: finished earlier in {run.path}, reused")
                continue
            if show_progress:
                progress.console.rule(name)
            progress.update(task, description=f"compare {k}/{len(plan)}: {run.name}")
            advance = _advancer(progress, task, done, start[run])
            try:
                train_run(base, run, show_progress, advance)
            # SystemExit too: a sys.exit() deep in one run (a plugin's, a library's) fails that
            # run; only Ctrl-C (KeyboardInterrupt) stops the compare.
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - one run must not stop the others
                failures.append(_failure(run, exc))
                progress.console.print(
                    styled((f"{run.name} failed:", "red"), " ", failures[-1].last_line)
                )
            done += iters - start[run]
            progress.update(task, completed=done)
        progress.update(task, description="compare", completed=total)
    return failures


def compare(
    base: ExperimentConfig,
    samplers: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    show_progress: bool = True,
    launch: Launch | None = None,
) -> CompareOutcome:
    """Train (or reuse) every (sampler, seed) run under ``out_dir/runs``.

    Without ``launch`` (or with the local launcher and one job at a time) the runs train in this
    process, one after another; otherwise they go to submitit (see ``launch.submit``).
    :func:`ohemcli.api.compare` also reports the finished runs (``report.compare_report``).
    """
    from ohemcli.engine.preflight import preflight
    from ohemcli.launch.jobs import alive_jobs
    from ohemcli.launch.options import resolve_jobs
    from ohemcli.launch.submit import check_launcher, launch_runs

    out_dir = Path(out_dir)
    # Every check before the first write: a refused compare leaves no folder and no compare.yaml.
    check_request(samplers, seeds)
    check_out_dir(out_dir)
    if launch is not None:
        launch = resolve_jobs(launch, base)  # checks the launcher's values (check_launch)
        check_launcher(launch)
    # A Slurm login node need not have the GPUs its jobs get: the jobs check the device.
    fingerprint = data_fingerprint(
        *preflight(base, device=launch is None or launch.launcher != "slurm")
    )
    with contextlib.ExitStack() as held:
        # One compare at a time decides what to train and submits it: the check for live jobs
        # and the submission are one step, so two compares never both submit every run.
        held.enter_context(compare_lock(ComparePaths(out_dir)))
        check_settings(out_dir, base, samplers, seeds, fingerprint)
        plan = plan_runs(out_dir, samplers, seeds)
        if show_progress:  # the base config's budget that a sampler's reference regime replaces
            say_budget_notes(base, samplers)
        for run in plan:  # a finished run is reused only when it is this run
            if is_finished(run.path, base.train.iters):
                check_finished(
                    RunPaths(run.path), run_config(base, run.sampler, run.seed), fingerprint
                )
        if launch is None:
            return CompareOutcome(plan, train_in_process(base, plan, show_progress))
        # Jobs of an earlier --no-wait call may still train some runs: watch them, do not race.
        jobs_dir = ComparePaths(out_dir).submitit
        earlier = jobs_dir.is_dir() and alive_jobs(jobs_dir, "local")
        if launch.in_process and not earlier:
            return CompareOutcome(plan, train_in_process(base, plan, show_progress))
        return launch_runs(base, plan, out_dir, launch, show_progress, submitted=held.close)
    raise AssertionError("unreachable")  # for type checkers: every branch above returns
