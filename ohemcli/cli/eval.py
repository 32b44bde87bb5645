"""``ohem eval``: VOC07 (and VOC10, COCO) AP of a run, or of existing devkit results files."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ohemcli.cli.app import app
from ohemcli.cli.option_types import MaxDetsOpt, ScoreThreshOpt, TestProtocolOpt
from ohemcli.cli.parsers import parse_classes
from ohemcli.errors import UserError
from ohemcli.progress import styled


class EvalMetric(str, Enum):
    voc07 = "voc07"
    voc10 = "voc10"
    coco = "coco"
    all = "all"


RunArg = Annotated[
    Path | None,
    typer.Argument(help="Run folder to evaluate (from ohem train). Not with --detections/--data."),
]
DetectionsOpt = Annotated[
    Path | None,
    typer.Option(
        "--detections",
        help="Devkit results folder or COCO results json (see above). Needs --data.",
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Ground truth for --detections: VOC root, COCO set or synth.",
    ),
]
ImagesOpt = Annotated[
    str | None,
    typer.Option("--images", help="Image folder of a COCO json given as --data."),
]
SplitOpt = Annotated[str, typer.Option("--split", help="ImageSets/Main/SPLIT.txt.")]
MetricOpt = Annotated[
    EvalMetric,
    typer.Option(
        "--metric",
        case_sensitive=False,
        help="Which AP (see above).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ClassesOpt = Annotated[
    str | None,
    typer.Option(
        "--classes",
        help="--detections: class names in label order, comma-separated.",
    ),
]


@app.command("eval")
def eval_command(
    run: RunArg = None,
    detections: DetectionsOpt = None,
    data: DataOpt = None,
    split: SplitOpt = "test",
    metric: MetricOpt = EvalMetric.voc07,
    json_out: JsonOpt = False,
    classes: ClassesOpt = None,
    images: ImagesOpt = None,
    max_dets: MaxDetsOpt = None,
    score_thresh: ScoreThreshOpt = None,
    test_protocol: TestProtocolOpt = None,
) -> None:
    """Score detections by the VOC devkit's rules (stable ranking, IoU > 0.5, difficult ignored).

    Either a run folder: its checkpoint is run on the split and the files are written to
    RUN/eval-SPLIT-PROTOCOL-METRIC/, beside the run's own RUN/eval/, which stays as training
    wrote it (ohem report reads that one).

    Or existing devkit results files: --detections DIR with --data ROOT. DIR holds
    PREFIX_det_SPLIT_CLASS.txt files of lines 'image_id score x1 y1 x2 y2' (1-based pixels).
    Or --detections FILE.json, a COCO results json [{image_id, category_id, bbox, score}] with
    the data set's ids (every run writes one: RUN/eval/detections_coco.json).

    Metrics: voc07 is the 11-point AP of the paper, voc10 the area under the curve, coco the
    mean AP over IoU 0.5:0.95.

    Examples:

      ohem eval runs/synth-ohem-s0 --metric all

      ohem eval runs/voc07-ohem-s1 --test-protocol ohem-release   (2000 over 0.00001)

      ohem eval --detections results/ --data VOCdevkit/VOC2007 --split test --metric voc07 --json

      ohem eval --detections dets.json --data coco/ --split val2017 --metric all
    """
    if run is not None:
        if detections is not None or data is not None:
            raise UserError("give either RUN or --detections/--data, not both")
        if classes is not None or images is not None:
            raise UserError(
                "--classes and --images apply to --detections only (a run knows its data)"
            )
        protocol = None if test_protocol is None else test_protocol.value
        result = _evaluate_run(run, split, metric.value, max_dets, score_thresh, protocol)
    elif max_dets is not None or score_thresh is not None or test_protocol is not None:
        raise UserError(
            "--max-dets/--score-thresh/--test-protocol apply to a RUN (results files are final)"
        )
    elif detections is not None and data is not None:
        from ohemcli.evaluation.evaluate import evaluate_detections

        result = evaluate_detections(
            detections, data, split, metric.value, parse_classes(classes), images
        )
    else:
        raise UserError("give a RUN folder, or --detections DIR together with --data ROOT")
    if json_out:
        print(json.dumps(result))  # plain print: rich would wrap long lines
    else:
        from ohemcli.progress import out_console

        out_console.print(render_eval_table(result))


def _evaluate_run(
    run: Path,
    split: str,
    metric: str,
    max_dets: int | None,
    score_thresh: float | None,
    protocol: str | None = None,
) -> dict[str, Any]:
    if not run.is_dir():
        raise UserError(f"{run}: run folder not found")
    from ohemcli.evaluation.evaluate import evaluate_run

    return evaluate_run(
        run, split=split, metric=metric, max_dets=max_dets, score_thresh=score_thresh,
        protocol=protocol,
    )  # fmt: skip


def protocol_caption(protocol: dict[str, Any]) -> str:
    """One line naming the test protocol of a result and its limits."""
    name = f"Test protocol {protocol['name']}: " if "name" in protocol else "Test protocol: "
    if "max_dets" not in protocol:  # fast-rcnn: adaptive per-class thresholds
        return (
            f"{name}per-class thresholds keeping about {protocol['per_class_per_image']} per "
            f"class per image over the set, NMS {protocol['nms']:g}."
        )
    return (
        f"{name}at most {protocol['max_dets']} detections per image, "
        f"score > {protocol['score_thresh']:g}, NMS {protocol['nms']:g}."
    )


def _ap(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def render_eval_table(result: dict[str, Any]) -> Table:
    """A table of per-class AP, ground-truth boxes and detections, with the mAP as its last row.

    ``result`` is what ``evaluation.metrics.evaluate_all`` returns; for metric ``all`` it shows one
    AP column per metric. "n/a" marks a class with no positives (left out of the mAP).
    """
    metric = result["metric"]
    columns = result["metrics"] if metric == "all" else {metric: result}
    table = Table(
        title=f"{metric} AP on {result['num_images']} images",
        caption="#GT: non-difficult boxes. n/a: no positives, not in the mAP.",
        caption_justify="left",
        min_width=64,  # room for the caption lines without wrapping
    )
    table.add_column("class")
    for name in columns:
        table.add_column(f"AP {name}" if metric == "all" else "AP", justify="right")
    table.add_column("#GT", justify="right")
    table.add_column("#det", justify="right")
    for name in result["AP"]:
        aps = [_ap(col["AP"].get(name)) for col in columns.values()]
        table.add_row(name, *aps, str(result["num_gt"][name]), str(result["num_det"][name]))
    table.add_section()
    totals = (sum(result["num_gt"].values()), sum(result["num_det"].values()))
    mean = [_ap(col["mAP"]) for col in columns.values()]
    table.add_row(styled(("mAP", "bold")), *mean, str(totals[0]), str(totals[1]))
    caption = str(table.caption or "")
    protocol = result.get("eval_protocol")
    if protocol:
        caption += "\n" + protocol_caption(protocol)
    coco = result.get("coco") or result.get("metrics", {}).get("coco", {}).get("coco")
    if coco:
        numbers = [f"{k} {_ap(v)}" for k, v in coco.items()]
        caption += "\nCOCO: " + ", ".join(numbers[:3]) + "\n      " + ", ".join(numbers[3:])
    table.caption = caption
    return table
