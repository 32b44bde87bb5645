"""``ohem compare``: train every sampler and seed with one config, then report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ohemcli.cli.aliases import config_options
from ohemcli.cli.app import app
from ohemcli.cli.launcher_options import (
    GpusPerRunOpt,
    JobsOpt,
    Launcher,
    LauncherOpt,
    SlurmAccountOpt,
    SlurmConstraintOpt,
    SlurmMemOpt,
    SlurmPartitionOpt,
    SlurmTimeOpt,
    WaitOpt,
)
from ohemcli.cli.option_types import (
    OUTPUT,
    REPORT,
    SAMPLER,
    TRAINING,
    BackboneOpt,
    BaselineOpt,
    BootstrapOpt,
    ConfigOpt,
    DataOpt,
    DetectorOpt,
    DeviceOpt,
    IterOpt,
    LrOpt,
    PairMode,
    PairsOpt,
    RegimeOpt,
    SetOpt,
    TargetMapOpt,
)
from ohemcli.cli.overrides import build_config, given_keys
from ohemcli.cli.parsers import parse_samplers, parse_seeds
from ohemcli.cli.printing import Format, print_results, stdout_to_stderr

if TYPE_CHECKING:
    from ohemcli.api import CompareResult
    from ohemcli.launch.grid import RunFailure


@app.command("compare")
@config_options(exclude=("sampler.name", "train.seed"))  # --samplers and --seeds set them per run
def compare_command(
    ctx: typer.Context,
    data: DataOpt = None,
    config: ConfigOpt = None,
    set_values: SetOpt = None,
    backbone: BackboneOpt = None,
    detector: DetectorOpt = None,
    samplers: Annotated[
        str,
        typer.Option(
            "--samplers",
            help="Comma list (default fixed,hnm,ohem).",
            rich_help_panel=SAMPLER,
            show_default=False,
        ),
    ] = "fixed,hnm,ohem",
    regime: RegimeOpt = None,
    seeds: Annotated[
        str,
        typer.Option("--seeds", help="Comma list, e.g. 1,2,3.", rich_help_panel=TRAINING),
    ] = "1",
    iters: IterOpt = None,
    device: DeviceOpt = None,
    lr: LrOpt = None,
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
    baseline: BaselineOpt = "fixed",
    pairs: PairsOpt = PairMode.baseline,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object on stdout.", rich_help_panel=REPORT),
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

    --samplers: fixed, hnm, ohem (the paper's three), ohem-mmdet, libra, pisa, sampling-free,
    focal, or your own sampler as pkg.module:Class or an entry point of the group
    ohemcli.samplers (docs/plugins.md).

    Only the sampler differs between runs of a seed: the same seed gives the same initial weights
    and image order. Runs go to OUT/runs/SAMPLER-sSEED/; OUT also gets compare.yaml,
    results.csv, summary.csv, report.md and plots/. Run it again to resume: finished runs are
    reused, an interrupted run continues from its checkpoint.

    --config takes a YAML file or a preset: synth_tiny, cpu_pretrained, cpu_tiny, bccd_tiny,
    voc07_vgg16, faster_tiny, faster_vgg16. Without it, synth gets synth_tiny and other data
    voc07_vgg16 (the paper) on CUDA or cpu_pretrained (pretrained tiny backbone) on a CPU; with
    --detector faster-rcnn, faster_vgg16 on CUDA and faster_tiny on a CPU or synth. Options
    override the YAML only when given.

    Every pair of samplers (ohem − hnm first) gets its paired mean Δ mAP and a 95% interval from
    a bootstrap over test images and seeds; "better" or "worse" only when it excludes 0. With
    more than three samplers, each is paired with --baseline (and ohem − hnm); --pairs all gives
    every pair. Time to
    accuracy: the train + mining seconds to reach --target-map. Without --eval-points a new
    compare evaluates 8 times (or the config's count, if higher).

    Examples:

      ohem compare --data synth

      ohem compare --data synth --seeds 1,2,3 --iters 600 --out runs/cmp

      ohem compare --data VOCdevkit/VOC2007 --config voc07_vgg16 --samplers fixed,ohem --device cuda

      ohem compare --data VOCdevkit/VOC2007 --seeds 1,2,3 --jobs 8  (one run per GPU)

      ohem compare --data VOCdevkit/VOC2007 --seeds 1,2,3 --launcher slurm --slurm-partition gpu
    """
    from ohemcli.api import run_compare
    from ohemcli.launch.submit import Launch

    sets = set_values or ()
    cfg = build_config(config, ctx.params, sets)
    launch = Launch(
        launcher.value, jobs, gpus_per_run, wait, slurm_partition, slurm_time, slurm_account,
        slurm_constraint, slurm_mem,
    )  # fmt: skip
    given = "train.eval_points" in given_keys(ctx.params, sets)
    with stdout_to_stderr():
        result = run_compare(
            cfg, parse_samplers(samplers), parse_seeds(seeds), out, progress, launch, bootstrap,
            target_map, baseline, pairs == PairMode.all, eval_points_given=given,
        )  # fmt: skip
    finish_compare(result, json_out)


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


def finish_compare(result: CompareResult, json_out: bool = False) -> None:
    """Print the report of a compare, name the runs still under way and the failed ones (exit 1)."""
    from ohemcli.progress import err_console

    report, out_dir = result.report, result.report.out_dir
    if report.analysis is not None:
        print_results(report.analysis, Format.json if json_out else Format.table)
        err_console.print(
            f"Files: {out_dir}/report.md, report.html, summary.csv, pairs.csv, results.csv, plots/",
            highlight=False,
            soft_wrap=True,
        )
    if report.pending:
        err_console.print(
            f"{len(report.pending)} run(s) under way ({', '.join(report.pending)}); run the same "
            f"command again, or ohem report {out_dir}, to collect them",
            highlight=False,
            soft_wrap=True,
        )
    if result.failures:
        print_failures(result.failures)
        raise typer.Exit(1)
