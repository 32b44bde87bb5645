"""``ohem compare``: train every sampler and seed with one config, then report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
    AmpOpt,
    BackboneOpt,
    BaselineOpt,
    BgLoOpt,
    BootstrapOpt,
    ConfigOpt,
    DataOpt,
    DeviceOpt,
    DifficultOpt,
    EvalPointsOpt,
    FpThreshOpt,
    FrozenConvsOpt,
    HnmPoolOpt,
    ImagesOpt,
    ImagesPerBatchOpt,
    IterOpt,
    KeepEmptyOpt,
    LibraBinsOpt,
    LrOpt,
    MaxDetsOpt,
    MineEveryOpt,
    OhemLossOpt,
    OhemNmsIouOpt,
    OhemNmsOpt,
    OhemNmsScopeOpt,
    PairMode,
    PairsOpt,
    PoolOpt,
    PretrainedOpt,
    RankDtypeOpt,
    RegimeOpt,
    RoIOpOpt,
    ScoreThreshOpt,
    TargetMapOpt,
    TensorboardOpt,
    TestProtocolOpt,
    TrainImagesOpt,
    WeightsOpt,
    WorkersOpt,
)
from ohemcli.cli.overrides import build_config
from ohemcli.cli.parsers import parse_samplers, parse_seeds
from ohemcli.cli.printing import Format, print_results, stdout_to_stderr

if TYPE_CHECKING:
    from ohemcli.config import ExperimentConfig
    from ohemcli.launch.compare import CompareOutcome, RunFailure

COMPARE_EVAL_POINTS = 8  # default evaluations per compare run: enough for time to accuracy


def _eval_points(cfg: ExperimentConfig, given: int | None, out_dir: Path) -> ExperimentConfig:
    """Without --eval-points: a compare folder being resumed keeps its own; a new one evaluates
    at least ``COMPARE_EVAL_POINTS`` times (time to accuracy interpolates between them)."""
    if given is not None:
        return cfg
    from ohemcli.runs.paths import ComparePaths
    from ohemcli.runs.settings import read_settings

    settings = ComparePaths(out_dir).settings
    saved = read_settings(settings) if settings.is_file() else None
    points = ((saved or {}).get("config") or {}).get("train", {}).get("eval_points")
    if not isinstance(points, int):
        points = max(cfg.train.eval_points, COMPARE_EVAL_POINTS)
    return replace(cfg, train=replace(cfg.train, eval_points=points))


@app.command("compare")
def compare_command(
    ctx: typer.Context,
    data: DataOpt = None,
    config: ConfigOpt = None,
    workers: WorkersOpt = None,
    train_images: TrainImagesOpt = None,
    use_difficult: DifficultOpt = None,
    images: ImagesOpt = None,
    keep_empty: KeepEmptyOpt = None,
    backbone: BackboneOpt = None,
    pretrained: PretrainedOpt = None,
    weights: WeightsOpt = None,
    roi_op: RoIOpOpt = None,
    frozen_convs: FrozenConvsOpt = None,
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
    regime: RegimeOpt = None,
    ohem_loss: OhemLossOpt = None,
    rank_dtype: RankDtypeOpt = None,
    mine_every: MineEveryOpt = None,
    hnm_fp_thresh: FpThreshOpt = None,
    hnm_pool_per_image: PoolOpt = None,
    hnm_pool: HnmPoolOpt = None,
    libra_bins: LibraBinsOpt = None,
    bg_lo: BgLoOpt = None,
    images_per_batch: ImagesPerBatchOpt = None,
    max_dets: MaxDetsOpt = None,
    score_thresh: ScoreThreshOpt = None,
    test_protocol: TestProtocolOpt = None,
    seeds: Annotated[
        str,
        typer.Option("--seeds", help="Comma list, e.g. 1,2,3.", rich_help_panel=TRAINING),
    ] = "1",
    iters: IterOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    tensorboard: TensorboardOpt = None,
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
    ohemcli.samplers (see the README).

    Only the sampler differs between runs of a seed: the same seed gives the same initial weights
    and image order. Runs go to OUT/runs/SAMPLER-sSEED/; OUT also gets compare.yaml,
    results.csv, summary.csv, report.md and plots/. Run it again to resume: finished runs are
    reused, an interrupted run continues from its checkpoint.

    --config takes a YAML file or a preset: synth_tiny, cpu_pretrained, cpu_tiny, bccd_tiny,
    voc07_vgg16. Without it, synth gets synth_tiny and other data voc07_vgg16 (the paper) on CUDA
    or cpu_pretrained (pretrained tiny backbone) on a CPU. Options override the YAML only when
    given.

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
    from ohemcli.launch.compare import compare
    from ohemcli.launch.submit import Launch
    from ohemcli.runs.paths import default_compare_dir

    cfg = build_config(config, ctx.params)
    out_dir = out or default_compare_dir(cfg)
    if not out_dir.exists():  # a new compare: refuse missing weights before any run starts
        from ohemcli.model.backbones import check_pretrained_available

        check_pretrained_available(cfg.model)
    cfg = _eval_points(cfg, eval_points, out_dir)
    launch = Launch(
        launcher.value, jobs, gpus_per_run, wait, slurm_partition, slurm_time, slurm_account,
        slurm_constraint, slurm_mem,
    )  # fmt: skip
    names = parse_samplers(samplers)
    check_baseline(baseline, pairs == PairMode.all, names, out_dir)
    with stdout_to_stderr():
        outcome = compare(cfg, names, parse_seeds(seeds), out_dir, progress, launch)
    finish_compare(
        outcome, out_dir, cfg.train.iters, bootstrap, target_map, json_out, baseline,
        pairs == PairMode.all,
    )  # fmt: skip


def check_baseline(baseline: str, all_pairs: bool, samplers: Sequence[str], out_dir: Path) -> None:
    """Refuse, before any training, a --baseline that the report could not pair with: more than
    three samplers (with the folder's earlier ones) and the baseline not among them."""
    from ohemcli.report.pairs import sampler_pairs
    from ohemcli.runs.paths import ComparePaths
    from ohemcli.runs.settings import read_settings

    settings = ComparePaths(out_dir).settings
    earlier = read_settings(settings).get("samplers") or [] if settings.is_file() else []
    sampler_pairs([*earlier, *samplers], baseline, all_pairs)  # one line when it cannot


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
    baseline: str = "fixed",
    all_pairs: bool = False,
) -> None:
    """Report the finished runs, name the failed ones (exit 1) and the ones still under way."""
    from ohemcli.progress import err_console
    from ohemcli.report.analysis import analyse_folders
    from ohemcli.report.render import write_analysis
    from ohemcli.runs.paths import ComparePaths

    # The whole folder: a compare that grew by samplers or seeds reports the earlier runs too.
    finished = sorted(set(outcome.finished(iters)) | set(ComparePaths(out_dir).finished_runs()))
    failures = outcome.unfinished(iters)
    if finished:
        a = analyse_folders(finished, bootstrap, target_map, baseline, all_pairs)
        a.failed = [f"{f.name} ({f.state}): {f.last_line}" for f in failures]
        write_analysis(out_dir, a)
        print_results(a, Format.json if json_out else Format.table)
        err_console.print(
            f"Files: {out_dir}/report.md, report.html, summary.csv, pairs.csv, results.csv, plots/",
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
    if failures:
        print_failures(failures)
        raise typer.Exit(1)
