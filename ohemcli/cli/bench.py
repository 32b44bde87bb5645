"""``ohem bench``: speed and memory of the samplers, side by side."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ohemcli.cli.aliases import config_options
from ohemcli.cli.app import app
from ohemcli.cli.option_types import (
    OUTPUT,
    SAMPLER,
    TRAINING,
    BackboneOpt,
    ConfigOpt,
    DataOpt,
    DetectorOpt,
    DeviceOpt,
    RegimeOpt,
    SetOpt,
)
from ohemcli.cli.overrides import build_config
from ohemcli.cli.parsers import parse_samplers


@app.command("bench")
@config_options(exclude=("sampler.name", "train.iters"))  # --samplers; --iters are bench's own
def bench_command(
    ctx: typer.Context,
    data: DataOpt = None,
    config: ConfigOpt = None,
    set_values: SetOpt = None,
    backbone: BackboneOpt = None,
    detector: DetectorOpt = None,
    regime: RegimeOpt = None,
    samplers: Annotated[
        str,
        typer.Option(
            "--samplers",
            help="Comma list, the first is the baseline (fixed,hnm,ohem).",
            rich_help_panel=SAMPLER,
            show_default=False,
        ),
    ] = "fixed,hnm,ohem",
    timed_iters: Annotated[  # not train.iters: bench times its own iterations
        int,
        typer.Option(
            "--iters",
            min=1,
            help="Timed iterations each (20).",
            rich_help_panel=TRAINING,
            show_default=False,
        ),
    ] = 20,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup",
            min=0,
            help="Untimed iterations first (3).",
            rich_help_panel=TRAINING,
            show_default=False,
        ),
    ] = 3,
    mining_runs: Annotated[
        int,
        typer.Option(
            "--mining-runs",
            min=1,
            help="hnm: timed mining passes and bare forwards (3).",
            show_default=False,
            rich_help_panel=TRAINING,
        ),
    ] = 3,
    eval_runs: Annotated[
        int,
        typer.Option(
            "--eval-runs",
            min=0,
            help="Also time N test evaluations (images/s).",
            show_default=False,
            rich_help_panel=TRAINING,
        ),
    ] = 0,
    device: DeviceOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Rows as JSON on stdout.", rich_help_panel=OUTPUT)
    ] = False,
) -> None:
    """Time an iteration of each sampler in one process and print the ratios to the first.

    Each sampler is warmed up in turn; then their timed iterations alternate (one of each, the
    order rotated), so that a slow spell of the machine weighs on all of them alike. Every
    sampler's model is in memory meanwhile. hnm's mining pass is timed beside the bare no-grad
    forward (features and RoI head over every proposal) of the same images, and spread over the
    iterations between passes.

    --config takes a YAML file or a preset: synth_tiny, cpu_pretrained, cpu_tiny, bccd_tiny,
    voc07_vgg16, faster_tiny, faster_vgg16. Without it, synth gets synth_tiny and other data
    voc07_vgg16 (the paper) on CUDA or cpu_pretrained (pretrained tiny backbone) on a CPU; with
    --detector faster-rcnn, faster_vgg16 on CUDA and faster_tiny on a CPU or synth. Options
    override the YAML only when given.

    Examples:

      ohem bench --data synth --iters 20

      ohem bench --data synth --eval-runs 3   (adds evaluation images/s)

      ohem bench --data VOCdevkit/VOC2007 --config voc07_vgg16 --device cuda --set train.amp=true
    """
    from ohemcli.engine.bench import bench_samplers, evaluation_speed
    from ohemcli.progress import out_console
    from ohemcli.samplers import check_sampler_names

    names = parse_samplers(samplers)
    check_sampler_names(names)
    cfg = build_config(config, ctx.params, set_values or ())
    rows = bench_samplers(cfg, names, timed_iters, warmup, mining_runs=mining_runs)
    speed = evaluation_speed(cfg, eval_runs, show_progress=not json_out) if eval_runs else None
    if json_out:
        print(json.dumps(rows if speed is None else [*rows, {"evaluation": speed}]))
        return
    table = Table(
        title=f"s/iter on {rows[0]['device']} (median of {timed_iters}, after {warmup} warm-up)"
    )
    for col in (
        "sampler",
        "s/iter",
        "read-only s/iter",
        "mining pass s",
        "mining s/iter",
        "total s/iter",
        f"ratio to {names[0]}",
        "peak MiB",
    ):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for r in rows:
        mining = "-" if r["mining_pass_s"] is None else f"{r['mining_pass_s']:.2f}"
        table.add_row(
            r["sampler"],
            f"{r['s_per_iter']:.4f}",
            f"{r['readonly_s_per_iter']:.4f}",
            mining,
            f"{r['mining_s_per_iter']:.4f}",
            f"{r['effective_s_per_iter']:.4f}",
            f"{r['ratio']:.2f}x",
            f"{r['peak_memory_mb']:.0f}",
        )
    out_console.print(table)
    out_console.print(parts_table(rows))
    for r in rows:
        if r["mining_s_per_image"] is not None:
            out_console.print(
                f"{r['sampler']} mining pass: {r['mining_s_per_image']:.4f} s/image; bare no-grad "
                f"forward of the same images: {r['forward_s_per_image']:.4f} s/image "
                f"({r['mining_overhead']:+.1%}; median of {mining_runs})",
                highlight=False,
            )
    if speed is not None:
        out_console.print(
            f"evaluation: {speed['images_per_s']:.1f} test images/s ({speed['images']} images, "
            f"whole evaluation with its files; median of {speed['runs']})",
            highlight=False,
        )


def parts_table(rows: list[dict]) -> Table:
    """Where each sampler's iteration goes: the median seconds of each part of a step."""
    from ohemcli.engine.bench import STEP_PARTS

    heads = {
        "trunk": "trunk",
        "candidates": "proposals",
        "readonly_pool": "read-only pool",
        "readonly_head": "read-only head",
        "select": "select",
        "pool": "pool",
        "head": "head+loss",
        "backward": "backward+update",
    }
    table = Table(title="where an iteration goes, s (median; read-only: every RoI, no autograd)")
    table.add_column("sampler", justify="left")
    for name in STEP_PARTS:
        table.add_column(heads[name], justify="right")
    for r in rows:
        table.add_row(r["sampler"], *(f"{r['parts'][name]:.4f}" for name in STEP_PARTS))
    return table
