"""``ohem train``: one run of one sampler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ohemcli.cli.app import app
from ohemcli.cli.option_types import (
    OUTPUT,
    AmpOpt,
    BackboneOpt,
    BgLoOpt,
    CheckpointEveryOpt,
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
    PoolOpt,
    PretrainedOpt,
    RankDtypeOpt,
    RegimeOpt,
    RoIOpOpt,
    SamplerOpt,
    ScoreThreshOpt,
    SeedOpt,
    TensorboardOpt,
    TestProtocolOpt,
    TrainImagesOpt,
    WeightsOpt,
    WorkersOpt,
)
from ohemcli.cli.overrides import build_config
from ohemcli.cli.printing import stdout_to_stderr


@app.command("train")
def train_command(
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
    sampler: SamplerOpt = None,
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
    iters: IterOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    tensorboard: TensorboardOpt = None,
    lr: LrOpt = None,
    eval_points: EvalPointsOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Run folder (default runs/DATA-SAMPLER-sSEED).", rich_help_panel=OUTPUT
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --out.", rich_help_panel=OUTPUT),
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print summary.json on stdout.", rich_help_panel=OUTPUT),
    ] = False,
) -> None:
    """Train Fast R-CNN with one RoI sampler, then evaluate it on the test split.

    Writes config.yaml, metrics.jsonl, checkpoint.pt, eval/ and summary.json into the run folder.

    --sampler: fixed, hnm, ohem (the paper's three), ohem-mmdet, libra, pisa, sampling-free,
    focal, or your own as pkg.module:Class (or its entry-point name), as in the YAML's
    sampler.name.

    --config takes a YAML file or a preset: synth_tiny, cpu_pretrained, cpu_tiny, bccd_tiny,
    voc07_vgg16. Without it, synth gets synth_tiny and other data voc07_vgg16 (the paper) on CUDA
    or cpu_pretrained (pretrained tiny backbone) on a CPU. Options override the YAML only when
    given.

    Examples:

      ohem train --data synth --sampler ohem --iters 600

      ohem train --data VOCdevkit/VOC2007 --config voc07_vgg16 --sampler ohem --device cuda
    """
    from ohemcli.engine.train import train
    from ohemcli.progress import out_console, styled

    cfg = build_config(config, ctx.params)
    with stdout_to_stderr():
        summary = train(cfg, out, resume=resume)
    if not summary:  # a non-zero torchrun rank
        return
    if json_out:
        print(json.dumps(summary))
    else:
        m_ap = summary.get("mAP")  # null in a summary of an older run with nothing to score
        shown = f"{m_ap:.4f}" if isinstance(m_ap, (int, float)) else "n/a"
        out_console.print(
            styled(
                (str(summary["sampler"]), "bold"),
                f": {summary['metric']} mAP {shown} after {summary['iters']} iterations, train "
                f"{summary['train_seconds']:.1f}s, mining {summary['mining_seconds']:.1f}s, "
                f"{summary['s_per_iter']:.3f} s/iter",
            ),
            soft_wrap=True,  # one line in a log file too, whatever the width
        )
