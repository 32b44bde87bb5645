"""The Python API: what the ``ohem`` commands do, as functions that give the same runs and files.

A config is an :class:`~ohemcli.config.ExperimentConfig`, or a YAML file or preset name with
dotted-key overrides laid over it (as ``--config`` and ``--set``; what an override implies comes
with it, see :func:`ohemcli.config.resolve`)::

    from ohemcli import api

    result = api.compare("synth_tiny", ["fixed", "ohem"], seeds=[1, 2], out="runs/cmp",
                         overrides={"train.iters": 200})
    print(result.analysis.summary)           # the table ohem compare prints; report.md is written
    summary = api.train("synth_tiny", "runs/one", overrides={"sampler.name": "ohem"})
    metrics = api.evaluate("runs/one", metric="all")
    analysis = api.report(["runs/cmp"])      # re-render, as ohem report

Errors a user can fix are :class:`ohemcli.errors.UserError`, with the one line the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ohemcli.config import ExperimentConfig, parse_config, resolve, with_absolute_paths

if TYPE_CHECKING:
    from ohemcli.launch.grid import CompareOutcome, RunFailure
    from ohemcli.launch.submit import Launch
    from ohemcli.report.analysis import Analysis
    from ohemcli.report.compare_report import CompareReport

Config = ExperimentConfig | str | Path | None
DEFAULT_SAMPLERS = ("fixed", "hnm", "ohem")


def load(config: Config = None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The config the command line builds from ``--config`` and ``--set``: a YAML file or preset
    name (None: the preset for ``data.root`` on this machine, as without --config), or a config
    object, with ``overrides`` (dotted keys) laid over it, checked, paths made absolute."""
    from ohemcli.presets import config_source, preset_for

    overrides = dict(overrides or {})
    if isinstance(config, ExperimentConfig):
        cfg = resolve(config, overrides)
    else:
        if config is None:
            detector = overrides.get("model.detector")
            config = preset_for(overrides.get("data.root"), _on_cuda(overrides), detector)
        text, where = config_source(config)
        cfg = parse_config(text, where, overrides)
    return with_absolute_paths(cfg)


def _on_cuda(overrides: Mapping[str, Any]) -> bool:
    device = overrides.get("train.device", "auto")
    if device != "auto":
        return device == "cuda"
    import torch

    return torch.cuda.is_available()


def train(
    config: Config = None,
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Train one run (``ohem train``) into ``out`` (default ``runs/<data>-<sampler>-s<seed>``);
    returns its summary.json."""
    from ohemcli.engine.train import train as train_run

    cfg = load(config, overrides)
    return train_run(cfg, None if out is None else Path(out), resume, show_progress)


@dataclass
class CompareResult:
    """What a compare did (the grid, and the runs that failed or are under way) and its report."""

    outcome: CompareOutcome
    report: CompareReport
    failures: list[RunFailure]  # every run that neither finished nor is under way

    @property
    def analysis(self) -> Analysis | None:
        """The analysed runs (summary, pairs, time to accuracy); None when none finished."""
        return self.report.analysis


def run_compare(
    cfg: ExperimentConfig,
    samplers: Sequence[str] = DEFAULT_SAMPLERS,
    seeds: Sequence[int] = (1,),
    out: str | Path | None = None,
    show_progress: bool = False,
    launch: Launch | None = None,
    bootstrap: int = 1000,
    target_map: float | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
    eval_points_given: bool = False,
) -> CompareResult:
    """:func:`compare` of a built config: check, train every (sampler, seed) run, report.

    Unless ``eval_points_given``, the runs evaluate as a compare's do
    (:func:`ohemcli.launch.compare.compare_eval_points`)."""
    from ohemcli.launch import compare as launching
    from ohemcli.report.compare_report import check_baseline, report_compare
    from ohemcli.runs.paths import default_compare_dir

    out_dir = Path(out) if out is not None else default_compare_dir(cfg)
    if not out_dir.exists():  # a new compare: refuse missing weights before any run starts
        from ohemcli.model.backbones import check_pretrained_available

        check_pretrained_available(cfg.model)
    cfg = launching.compare_eval_points(cfg, out_dir, eval_points_given)
    check_baseline(baseline, all_pairs, samplers, out_dir)
    outcome = launching.compare(cfg, list(samplers), list(seeds), out_dir, show_progress, launch)
    iters = cfg.train.iters
    failures = outcome.unfinished(iters)
    report = report_compare(
        out_dir,
        outcome.finished(iters),
        [f"{f.name} ({f.state}): {f.last_line}" for f in failures],
        [r.name for r in outcome.pending],
        bootstrap, target_map, baseline, all_pairs,
    )  # fmt: skip
    return CompareResult(outcome, report, failures)


def compare(
    config: Config = None,
    samplers: Sequence[str] = DEFAULT_SAMPLERS,
    seeds: Sequence[int] = (1,),
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    show_progress: bool = False,
    **report_options: Any,
) -> CompareResult:
    """``ohem compare``: train every sampler and seed with one config, then write the report
    (report.md, summary.csv, pairs.csv, results.csv, plots/) into ``out`` (default
    ``runs/compare-<data>``). ``report_options``: ``launch``, ``bootstrap``, ``target_map``,
    ``baseline``, ``all_pairs`` of :func:`run_compare`. A run that failed is named in
    ``result.report.failed``; nothing is raised for it."""
    cfg = load(config, overrides)
    given = "train.eval_points" in (overrides or {})
    return run_compare(
        cfg, samplers, seeds, out, show_progress, eval_points_given=given, **report_options
    )


def evaluate(
    run: str | Path | None = None,
    detections: str | Path | None = None,
    data: str | None = None,
    split: str = "test",
    metric: str = "voc07",
    **options: Any,
) -> dict[str, Any]:
    """``ohem eval``: a run's checkpoint on ``split`` (``options``: ``max_dets``,
    ``score_thresh``, ``protocol``, ``device``), or existing results files ``detections`` against
    the ground truth of ``data`` (``options``: ``classes``, ``images``). Returns the metrics."""
    from ohemcli.errors import UserError
    from ohemcli.evaluation.evaluate import evaluate_detections, evaluate_run

    if run is not None:
        if not Path(run).is_dir():
            raise UserError(f"{run}: run folder not found")
        options.setdefault("show_progress", False)
        return evaluate_run(Path(run), split=split, metric=metric, **options)
    if detections is None or data is None:
        raise UserError("give a RUN folder, or detections together with data")
    return evaluate_detections(
        Path(detections), data, split, metric, options.get("classes"), options.get("images")
    )


def report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    bootstrap: int = 1000,
    target_map: float | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
    plots: bool = True,
) -> Analysis:
    """``ohem report``: analyse the finished runs under ``paths`` (compare and/or run folders) and
    write the files into ``out`` (default: the one compare folder given; none otherwise)."""
    from ohemcli.report.analysis import analyse_folders
    from ohemcli.report.render import write_analysis
    from ohemcli.runs.paths import ComparePaths
    from ohemcli.runs.settings import read_settings

    folders = [Path(p) for p in paths]
    for path in folders:  # report.md shows the config: a broken compare.yaml is refused first
        settings = ComparePaths(path).settings
        if settings.is_file():
            read_settings(settings)
    a = analyse_folders(folders, bootstrap, target_map, baseline, all_pairs)
    target = report_folder(folders, out)
    if target is not None:
        write_analysis(target, a, plots=plots)
    return a


def report_folder(paths: Sequence[str | Path], out: str | Path | None = None) -> Path | None:
    """Where :func:`report` writes its files: ``out``, else the one compare folder given."""
    from ohemcli.runs.paths import ComparePaths

    if out is not None:
        return Path(out)
    if len(paths) == 1 and ComparePaths(Path(paths[0])).is_compare():
        return Path(paths[0])
    return None
