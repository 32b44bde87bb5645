"""``ohem compare`` (train every sampler and seed, then report) and ``ohem report`` (re-render)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ohemcli.cli.app import app
from ohemcli.cli.options import (
    OUTPUT,
    SAMPLER,
    TRAINING,
    AmpOpt,
    BackboneOpt,
    BgLoOpt,
    ConfigFlags,
    ConfigOpt,
    DataOpt,
    DeviceOpt,
    DifficultOpt,
    EvalPointsOpt,
    FpThreshOpt,
    GpusPerRunOpt,
    HnmPoolOpt,
    ImagesPerBatchOpt,
    IterOpt,
    JobsOpt,
    Launcher,
    LauncherOpt,
    LrOpt,
    MaxDetsOpt,
    MineEveryOpt,
    OhemLossOpt,
    OhemNmsIouOpt,
    OhemNmsOpt,
    OhemNmsScopeOpt,
    PoolOpt,
    PretrainedOpt,
    RoIOpOpt,
    ScoreThreshOpt,
    SlurmAccountOpt,
    SlurmConstraintOpt,
    SlurmMemOpt,
    SlurmPartitionOpt,
    SlurmTimeOpt,
    WaitOpt,
    WeightsOpt,
    WorkersOpt,
    build_config,
    parse_samplers,
)
from ohemcli.errors import UserError

if TYPE_CHECKING:
    from ohemcli.config import ExperimentConfig
    from ohemcli.launch.compare import CompareOutcome, RunFailure
    from ohemcli.report.analysis import Analysis

COMPARE_EVAL_POINTS = 8  # default evaluations per compare run: enough for time to accuracy
REPORT_PANEL = "Report"
BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap",
        min=0,
        metavar="N",
        show_default=False,
        help="Resamples for the 95% intervals (default 1000; 0: t over seeds).",
        rich_help_panel=REPORT_PANEL,
    ),
]
TargetMapOpt = Annotated[
    float | None,
    typer.Option(
        "--target-map",
        min=0.0,
        max=1.0,
        metavar="MAP",
        help="mAP for time to accuracy (default: 0.95 x lowest final).",
        rich_help_panel=REPORT_PANEL,
    ),
]
TABLE_WIDTH = 180  # rich table width when stdout is not a terminal (files, pipes, tests)


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``: a comma list of seeds (not a count)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(
            f"--seeds: expected a comma list of integers such as 1,2,3, got '{text}'"
        ) from None
    if not seeds:
        raise UserError("--seeds: give at least one seed, e.g. --seeds 1")
    return seeds


def print_results(a: Analysis, fmt: Format = Format.table, runs: bool = False) -> None:
    """The summary and pairs tables (or, with ``runs``, one row per run) and notes on stdout."""
    from rich.console import Console

    from ohemcli.progress import out_console
    from ohemcli.report import analysis, tables

    text = "\n".join([*a.notes, *a.time_sentences(), a.method])
    if fmt == Format.json:
        print(analysis.to_json(a))
    elif fmt == Format.csv:
        print(tables.to_csv(a.results if runs else a.summary), end="")
    elif fmt == Format.md:
        shown = a.results.drop(columns=["run_dir"]) if runs else tables.formatted(a.summary)
        pairs = tables.markdown_table(tables.formatted_pairs(a.pairs)) if len(a.pairs) else ""
        print(tables.markdown_table(shown) + "\n" + pairs + "\n" + text)
    else:
        console = out_console if out_console.is_terminal else Console(width=TABLE_WIDTH)
        console.print(tables.rich_table(tables.formatted(a.summary), title="Sampler comparison"))
        if len(a.pairs):
            console.print(tables.rich_table(tables.formatted_pairs(a.pairs), title="Pairs"))
        console.print(text, highlight=False, soft_wrap=True)


def _eval_points(cfg: ExperimentConfig, given: int | None, out_dir: Path) -> ExperimentConfig:
    """Without --eval-points: a compare folder being resumed keeps its own; a new one evaluates
    at least ``COMPARE_EVAL_POINTS`` times (time to accuracy interpolates between them)."""
    if given is not None:
        return cfg
    import yaml

    from ohemcli.runs.paths import ComparePaths

    settings = ComparePaths(out_dir).settings
    saved = yaml.safe_load(settings.read_text(encoding="utf-8")) if settings.is_file() else None
    points = ((saved or {}).get("config") or {}).get("train", {}).get("eval_points")
    if not isinstance(points, int):
        points = max(cfg.train.eval_points, COMPARE_EVAL_POINTS)
    return replace(cfg, train=replace(cfg.train, eval_points=points))


@app.command("compare")
def compare_command(
    data: DataOpt = None,
    config: ConfigOpt = None,
    workers: WorkersOpt = None,
    use_difficult: DifficultOpt = None,
    backbone: BackboneOpt = None,
    pretrained: PretrainedOpt = None,
    weights: WeightsOpt = None,
    roi_op: RoIOpOpt = None,
    samplers: Annotated[
        str,
        typer.Option(
            "--samplers",
            help="Comma list (default fixed,hnm,ohem).",
            rich_help_panel=SAMPLER,
            show_default=False,
        ),
    ] = "fixed,hnm,ohem",
    ohem_nms: OhemNmsOpt = None,
    ohem_nms_iou: OhemNmsIouOpt = None,
    ohem_nms_scope: OhemNmsScopeOpt = None,
    ohem_loss: OhemLossOpt = None,
    mine_every: MineEveryOpt = None,
    hnm_fp_thresh: FpThreshOpt = None,
    hnm_pool_per_image: PoolOpt = None,
    hnm_pool: HnmPoolOpt = None,
    bg_lo: BgLoOpt = None,
    images_per_batch: ImagesPerBatchOpt = None,
    max_dets: MaxDetsOpt = None,
    score_thresh: ScoreThreshOpt = None,
    seeds: Annotated[
        str,
        typer.Option("--seeds", help="Comma list, e.g. 1,2,3.", rich_help_panel=TRAINING),
    ] = "1",
    iters: IterOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    lr: LrOpt = None,
    eval_points: EvalPointsOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Compare folder (runs/compare-DATA).", rich_help_panel=OUTPUT),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress", help="Progress on stderr.", rich_help_panel=OUTPUT
        ),
    ] = True,
    bootstrap: BootstrapOpt = 1000,
    target_map: TargetMapOpt = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object on stdout.", rich_help_panel=REPORT_PANEL
        ),
    ] = False,
    launcher: LauncherOpt = Launcher.local,
    jobs: JobsOpt = None,
    gpus_per_run: GpusPerRunOpt = 1,
    wait: WaitOpt = True,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_time: SlurmTimeOpt = 24 * 60,
    slurm_account: SlurmAccountOpt = None,
    slurm_constraint: SlurmConstraintOpt = None,
    slurm_mem: SlurmMemOpt = None,
) -> None:
    """Train one Fast R-CNN per sampler and seed with the same config, budget and seed, and compare.

    Only the sampler differs between runs of a seed: the same seed gives the same initial weights
    and image order. Runs go to OUT/runs/SAMPLER-sSEED/; OUT also gets compare.yaml,
    results.csv, summary.csv, report.md and plots/. Run it again to resume: finished runs are
    reused, an interrupted run continues from its checkpoint.

    --config takes a YAML file or a preset: synth_tiny, cpu_tiny, bccd_tiny, voc07_vgg16.
    Without it, synth gets synth_tiny and other data voc07_vgg16 (the paper) on CUDA or cpu_tiny
    on a CPU. Options override the YAML only when given.

    Every pair of samplers (ohem − hnm first) gets its paired mean Δ mAP and a 95% interval from
    a bootstrap over test images and seeds; "better" or "worse" only when it excludes 0. Time to
    accuracy: the train + mining seconds to reach --target-map. Without --eval-points a new
    compare evaluates 8 times (or the config's count, if higher).

    Examples:

      ohem compare --data synth

      ohem compare --data synth --seeds 1,2,3 --iters 600 --out runs/cmp

      ohem compare --data VOCdevkit/VOC2007 --config voc07_vgg16 --samplers fixed,ohem --device cuda

      ohem compare --data VOCdevkit/VOC2007 --seeds 1,2,3 --jobs 8  (one run per GPU)

      ohem compare --data VOCdevkit/VOC2007 --seeds 1,2,3 --launcher slurm --slurm-partition gpu
    """
    flags = ConfigFlags(
        data=data,
        workers=workers,
        use_difficult=use_difficult,
        backbone=backbone,
        pretrained=pretrained,
        weights=weights,
        roi_op=roi_op,
        ohem_nms=ohem_nms,
        ohem_nms_iou=ohem_nms_iou,
        ohem_nms_scope=ohem_nms_scope,
        ohem_loss=ohem_loss,
        mine_every=mine_every,
        hnm_fp_thresh=hnm_fp_thresh,
        hnm_pool_per_image=hnm_pool_per_image,
        hnm_pool=hnm_pool,
        bg_lo=bg_lo,
        images_per_batch=images_per_batch,
        max_dets=max_dets,
        score_thresh=score_thresh,
        iters=iters,
        device=device,
        amp=amp,
        lr=lr,
        eval_points=eval_points,
    )
    from ohemcli.data.splits import data_name
    from ohemcli.launch.compare import compare
    from ohemcli.launch.submit import Launch

    cfg = build_config(config, flags)
    out_dir = out or Path("runs") / f"compare-{data_name(cfg.data.root)}"
    cfg = _eval_points(cfg, eval_points, out_dir)
    launch = Launch(
        launcher.value, jobs, gpus_per_run, wait, slurm_partition, slurm_time, slurm_account,
        slurm_constraint, slurm_mem,
    )  # fmt: skip
    outcome = compare(cfg, parse_samplers(samplers), parse_seeds(seeds), out_dir, progress, launch)
    finish_compare(outcome, out_dir, cfg.train.iters, bootstrap, target_map, json_out)


def print_failures(failures: Sequence[RunFailure]) -> None:
    """One row per failed run on stderr: its name, state and the last line of its log."""
    from rich.table import Table

    from ohemcli.progress import err_console

    table = Table(title="Runs that did not finish", title_justify="left")
    for column in ("run", "state", "last line of its log", "folder"):
        table.add_column(column, overflow="fold")
    for f in failures:
        table.add_row(f.name, f.state, f.last_line, str(f.path))
    err_console.print(table)


def finish_compare(
    outcome: CompareOutcome,
    out_dir: Path,
    iters: int,
    bootstrap: int = 1000,
    target_map: float | None = None,
    json_out: bool = False,
) -> None:
    """Report the finished runs, name the failed ones (exit 1) and the ones still under way."""
    from ohemcli.progress import err_console
    from ohemcli.report import load_runs
    from ohemcli.report.analysis import analyse_results
    from ohemcli.report.render import write_analysis

    finished = outcome.finished(iters)
    if finished:
        a = analyse_results(load_runs(finished), bootstrap, target_map)
        write_analysis(out_dir, a)
        print_results(a, Format.json if json_out else Format.table)
        err_console.print(
            f"Files: {out_dir}/report.md, summary.csv, pairs.csv, results.csv, plots/",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.pending:
        names = ", ".join(r.name for r in outcome.pending)
        err_console.print(
            f"{len(outcome.pending)} run(s) under way ({names}); run the same command again, or "
            f"ohem report {out_dir}, to collect them",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.failures:
        print_failures(outcome.failures)
        raise typer.Exit(1)


def _is_compare_folder(path: Path) -> bool:
    from ohemcli.runs.paths import ComparePaths

    return ComparePaths(path).is_compare()


@app.command("report")
def report_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Compare folders and/or run folders.", show_default=False)
    ],
    fmt: Annotated[
        Format, typer.Option("--format", help="What to print on stdout.")
    ] = Format.table,
    runs: Annotated[bool, typer.Option("--runs", help="One row per run (md, csv).")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.md, CSVs, plots (default: a lone compare folder).",
        ),
    ] = None,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw plots with the files.")
    ] = True,
    bootstrap: BootstrapOpt = 1000,
    target_map: TargetMapOpt = None,
) -> None:
    """Re-render the tables of finished runs, without training.

    Given one compare folder, it also rewrites that folder's results.csv, summary.csv, report.md
    and plots/. Given run folders or several compare folders, it prints only, unless --out names
    a folder for the files.

    Examples:

      ohem report runs/compare-synth

      ohem report runs/compare-synth --format md

      ohem report runs/cmp-a runs/cmp-b --format csv --runs

      ohem report runs/synth-fixed-s1 runs/synth-ohem-s1 --out runs/adhoc
    """
    from ohemcli.progress import err_console
    from ohemcli.report.analysis import analyse
    from ohemcli.report.render import write_analysis
    from ohemcli.report.tables import read_runs

    a = analyse(read_runs(paths), bootstrap, target_map)
    target = out
    if target is None and len(paths) == 1 and _is_compare_folder(paths[0]):
        target = paths[0]
    if target is not None:
        write_analysis(target, a, plots=plots)
    print_results(a, fmt, runs)
    if target is not None:
        err_console.print(
            f"wrote {target}/report.md, summary.csv, pairs.csv, results.csv"
            + (", plots/" if plots else "")
        )
