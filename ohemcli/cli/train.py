"""``ohem train``: one run of one sampler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ohemcli.cli.app import app
from ohemcli.cli.options import (
    AmpOpt,
    BackboneOpt,
    ConfigOpt,
    DataOpt,
    DeviceOpt,
    DifficultOpt,
    EvalPointsOpt,
    FpThreshOpt,
    HnmPoolOpt,
    IterOpt,
    LrOpt,
    MineEveryOpt,
    OhemLossOpt,
    OhemNmsIouOpt,
    OhemNmsOpt,
    OhemNmsScopeOpt,
    PoolOpt,
    PretrainedOpt,
    RoIOpOpt,
    SeedOpt,
    WeightsOpt,
    WorkersOpt,
    build_config,
)  # fmt: skip
from ohemcli.samplers import SamplerName


@app.command("train")
def train_command(
    data: DataOpt = None,
    sampler: Annotated[
        SamplerName, typer.Option("--sampler", help="Which RoIs to train on.")
    ] = SamplerName.fixed,
    config: ConfigOpt = None,
    iters: IterOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run folder (default runs/DATA-SAMPLER-sSEED)."),
    ] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")
    ] = False,
    checkpoint_every: Annotated[
        int | None,
        typer.Option("--checkpoint-every", min=1, help="Iterations between checkpoints."),
    ] = None,
    backbone: BackboneOpt = None,
    pretrained: PretrainedOpt = None,
    weights: WeightsOpt = None,
    roi_op: RoIOpOpt = None,
    lr: LrOpt = None,
    workers: WorkersOpt = None,
    eval_points: EvalPointsOpt = None,
    use_difficult: DifficultOpt = None,
    ohem_nms: OhemNmsOpt = None,
    ohem_nms_iou: OhemNmsIouOpt = None,
    ohem_nms_scope: OhemNmsScopeOpt = None,
    ohem_loss: OhemLossOpt = None,
    mine_every: MineEveryOpt = None,
    hnm_fp_thresh: FpThreshOpt = None,
    hnm_pool_per_image: PoolOpt = None,
    hnm_pool: HnmPoolOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json on stdout.")] = False,
) -> None:
    """Train Fast R-CNN with one RoI sampler, then evaluate it on the test split.

    Writes config.yaml, metrics.jsonl, checkpoint.pt, eval/ and summary.json into the run folder.

    Examples:

      ohem train --data synth --sampler ohem --iters 600

      ohem train --data VOCdevkit/VOC2007 --config voc07_vgg16 --sampler ohem --device cuda --amp
    """
    options = dict(locals())
    for key in ("config", "out", "resume", "json_out"):
        options.pop(key)
    from ohemcli.engine.train import train
    from ohemcli.progress import out_console

    cfg = build_config(config, options)
    summary = train(cfg, out, resume=resume)
    if not summary:  # a non-zero torchrun rank
        return
    if json_out:
        print(json.dumps({k: v for k, v in summary.items() if k != "eval_history"}))
    else:
        out_console.print(
            f"[bold]{summary['sampler']}[/bold]: {summary['metric']} "
            f"mAP {summary['mAP']:.4f} after "
            f"{summary['iters']} iterations, train {summary['train_seconds']:.1f}s, mining "
            f"{summary['mining_seconds']:.1f}s, {summary['s_per_iter']:.3f} s/iter"
        )
