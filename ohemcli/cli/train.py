"""``ohem train``: one run of one sampler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ohemcli.cli.aliases import config_options
from ohemcli.cli.app import app
from ohemcli.cli.option_types import (
    OUTPUT,
    BackboneOpt,
    ConfigOpt,
    DataOpt,
    DetectorOpt,
    DeviceOpt,
    IterOpt,
    LrOpt,
    RegimeOpt,
    SamplerOpt,
    SeedOpt,
    SetOpt,
)
from ohemcli.cli.overrides import build_config
from ohemcli.cli.printing import stdout_to_stderr


@app.command("train")
@config_options()
def train_command(
    ctx: typer.Context,
    data: DataOpt = None,
    config: ConfigOpt = None,
    set_values: SetOpt = None,
    backbone: BackboneOpt = None,
    detector: DetectorOpt = None,
    sampler: SamplerOpt = None,
    regime: RegimeOpt = None,
    iters: IterOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    lr: LrOpt = None,
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
    voc07_vgg16, faster_tiny, faster_vgg16. Without it, synth gets synth_tiny and other data
    voc07_vgg16 (the paper) on CUDA or cpu_pretrained (pretrained tiny backbone) on a CPU; with
    --detector faster-rcnn, faster_vgg16 on CUDA and faster_tiny on a CPU or synth. Options
    override the YAML only when given; --set KEY=VALUE sets any config key (ohem config keys
    lists them) after them.

    Examples:

      ohem train --data synth --sampler ohem --iters 600

      ohem train --data synth --sampler ohem --set sampler.ohem_loss=cls --set data.scale=400

      ohem train --data VOCdevkit/VOC2007 --config voc07_vgg16 --sampler ohem --device cuda
    """
    from ohemcli.engine.train import train
    from ohemcli.progress import out_console, styled

    cfg = build_config(config, ctx.params, set_values or ())
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
