"""``ohem data ...``: inspect, convert, generate, download and propose boxes for a data set."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from ohemcli.cli.app import data_app
from ohemcli.cli.parsers import parse_classes
from ohemcli.errors import UserError

if TYPE_CHECKING:
    from ohemcli.data.splits import Dataset

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="VOC root, COCO set or synth.",
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="The split to read (see above).")]
ImagesOpt = Annotated[
    str | None, typer.Option("--images", help="Image folder of COCO json files (--data).")
]


class Format(str, Enum):
    coco = "coco"
    voc = "voc"


class DownloadSet(str, Enum):
    voc2007 = "voc2007"
    voc2007_proposals = "voc2007-proposals"
    vgg16_caffe = "vgg16-caffe"


def _per_class(dataset: Dataset, difficult_only: bool = False) -> np.ndarray:
    labels = [r.labels[r.difficult] if difficult_only else r.labels for r in dataset.records]
    return np.bincount(np.concatenate(labels), minlength=dataset.num_classes + 1)[1:]


def split_stats(dataset: Dataset) -> dict[str, Any]:
    """Images, objects (every annotated one), difficult, objects per class, degenerate drops.

    ``objects`` counts every annotated object, degenerate ones and those of unlisted classes
    included; ``classes`` and ``difficult`` count the kept ones (crowd regions are difficult).
    A COCO set adds ``format``, ``split``, ``json``, ``crowd``, ``skipped_empty`` and ``labels``:
    label -> ``{"name", "category_id"}``, its category ids' labels (background is 0).
    """
    from ohemcli.data.coco import COCODataset

    per_class = _per_class(dataset)
    result: dict[str, Any] = {
        "images": len(dataset),
        "objects": int(dataset.num_objects),
        "difficult": int(sum(int(r.difficult.sum()) for r in dataset.records)),
        "classes": {name: int(n) for name, n in zip(dataset.classes, per_class, strict=True)},
        "dropped": len(dataset.dropped),
    }
    if isinstance(dataset, COCODataset):
        result.update(
            format="coco",
            split=dataset.split,  # the split that the name given found (test -> val2017)
            json=str(dataset.json_path),
            crowd=dataset.num_crowd,
            skipped_empty=dataset.skipped_empty,
            labels={
                str(k + 1): {"name": name, "category_id": cid}
                for k, (name, cid) in enumerate(
                    zip(dataset.classes, dataset.category_ids, strict=True)
                )
            },
        )
    return result


@data_app.command("stats")
def stats(
    data: DataOpt = "synth",
    split: SplitOpt = "trainval",
    classes: Annotated[
        str | None,
        typer.Option(help="Class names, comma-separated (a subset, or the order)."),
    ] = None,
    images: ImagesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    with_proposals: Annotated[
        bool,
        typer.Option(
            "--proposals",
            help="Also report selective search's recall (cached boxes).",
        ),
    ] = False,
    max_boxes: Annotated[
        int, typer.Option("--max-boxes", min=0, help="--proposals: boxes kept (0: all).")
    ] = 0,
    ss_max_side: Annotated[
        int,
        typer.Option("--ss-max-side", min=0, help="--proposals: shrink first (240)."),
    ] = 0,
) -> None:
    """Count the images, objects per class and difficult objects of one split.

    --proposals adds selective search's recall: the share of objects (not difficult, not crowd)
    that its first 100, 300 and 1,000 boxes per image cover at IoU 0.5 and 0.7, as every
    evaluation records it for the proposals a run used (an RPN's too). Its boxes are cached, so
    fast-rcnn training on the same --max-boxes and --ss-max-side reuses them.

    --data is a VOC root, 'synth', or a COCO set: a folder in COCO's layout
    (annotations/instances_SPLIT.json, SPLIT/) or Roboflow's (SPLIT/_annotations.coco.json), or
    json files a.json,b.json with --images DIR. --split is ImageSets/Main/SPLIT.txt of a VOC root,
    or a COCO split (trainval also finds train or train2017; test finds valid or val2017).

    For a COCO set it also states how category ids map to labels (background is label 0) and
    counts the crowd regions (ignored, as difficult boxes are). The split's images are all
    counted, as a test split reads them; a training run skips those with no usable box.

    Example:  ohem data stats --data ../shared/data/voc100 --split trainval --json
    (a COCO set: ohem data stats --data coco/ --split val2017)
    """
    from ohemcli.data.splits import open_dataset

    dataset = open_dataset(data, split, parse_classes(classes), images=images)
    result = split_stats(dataset)
    if with_proposals:
        result["proposal_recall"] = _search_recall(dataset, max_boxes, ss_max_side, not as_json)
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.table import Table

    from ohemcli.progress import out_console

    where = result.get("json", dataset.root)  # a COCO split's json, a VOC root
    table = Table(title=f"{where} / {dataset.split}: {result['images']} images")
    columns = ["class", "objects", "difficult", "label"]
    columns += ["category id"] if "labels" in result else []  # a COCO set: its own ids
    for column in columns:
        table.add_column(column, justify="left" if column == "class" else "right")
    difficult = _per_class(dataset, difficult_only=True)
    cids = [v["category_id"] for v in result.get("labels", {}).values()]
    for k, ((name, n), n_difficult) in enumerate(
        zip(result["classes"].items(), difficult, strict=True)
    ):
        cid = [str(c) for c in cids[k : k + 1]]  # the category id column of a COCO set
        table.add_row(name, str(n), str(n_difficult), str(k + 1), *cid)
    table.add_section()
    table.add_row("all (kept)", str(sum(result["classes"].values())), str(result["difficult"]))
    out_console.print(table)
    out_console.print(
        f"{result['objects']} annotated objects, {result['dropped']} degenerate dropped, "
        f"{dataset.unknown_objects} of classes not listed"
    )
    if "labels" in result:
        mapping = ", ".join(
            f"{v['category_id']} -> {k} ({v['name']})" for k, v in result["labels"].items()
        )
        out_console.print(
            f"COCO category id -> label (background is 0; by id unless --classes): {mapping}. "
            f"{result['crowd']} crowd regions, ignored in training and evaluation (counted as "
            "difficult)."
        )
    if "proposal_recall" in result:
        _print_recall(result["proposal_recall"])


def _search_recall(dataset: Dataset, max_boxes: int, max_side: int, show: bool) -> dict:
    """Selective search over ``dataset`` (cached) and its recall (``split_recall``)."""
    from ohemcli.data.proposals import SELECTIVE_SEARCH, load_proposals
    from ohemcli.evaluation.proposal_recall import split_recall

    boxes = load_proposals(
        dataset,
        source=SELECTIVE_SEARCH,
        max_boxes=max_boxes,
        workers=None,
        show_progress=show,
        max_side=max_side,
    )
    return {"source": "selective_search", **split_recall(dataset.records, boxes)}


def _print_recall(recall: dict) -> None:
    """The recall figures as one table: rows IoU, columns proposals per image."""
    from rich.table import Table

    from ohemcli.progress import out_console

    tops = sorted({int(k.split("@")[0]) for k in recall if "@" in k})
    ious = sorted({k.split("@")[1] for k in recall if "@" in k})
    table = Table(
        title=f"{recall['source']} recall ({recall['mean_proposals']:.0f} boxes per image)"
    )
    table.add_column("IoU", justify="left")
    for top in tops:
        table.add_column(f"first {top}", justify="right")
    for iou in ious:
        table.add_row(iou, *(f"{recall[f'{top}@{iou}']:.3f}" for top in tops))
    out_console.print(table)


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to create (must not exist).")],
    trainval: Annotated[int, typer.Option(min=1, help="Images in the trainval split.")] = 400,
    test: Annotated[int, typer.Option(min=1, help="Images in the test split.")] = 150,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
) -> None:
    """Write the built-in synthetic data set in VOC layout to a folder.

    Example:  ohem data synth --out data/synth --trainval 400 --test 150 --seed 0
    """
    from ohemcli.data.synthetic import generate_synthetic

    root = generate_synthetic(out, trainval=trainval, test=test, seed=seed)
    typer.echo(f"wrote {trainval} trainval + {test} test images to {root}")


@data_app.command("proposals")
def proposals(
    data: DataOpt = "synth",
    split: SplitOpt = "trainval",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes (default: one per core).")
    ] = None,
    max_boxes: Annotated[
        int, typer.Option("--max", min=0, help="Most boxes per image (0: no cap).")
    ] = 2000,
    from_mat: Annotated[
        Path | None,
        typer.Option("--from-mat", help="Fast R-CNN .mat file instead of selective search."),
    ] = None,
    images: ImagesOpt = None,
    ss_max_side: Annotated[
        int,
        typer.Option(
            "--ss-max-side",
            min=0,
            help="Shrink images to this longer side first (0: full size, the paper; the CPU "
            "presets use 240). Must match the config's data.ss_max_side to share its cache.",
        ),
    ] = 0,
) -> None:
    """Compute (or load from the cache) proposals and report their recall.

    Selective search results are cached, so training and evaluation reuse them.

    Example:  ohem data proposals --data synth --split test --workers 2 --ss-max-side 240
    """
    from ohemcli.data.proposals import (
        SELECTIVE_SEARCH,
        load_proposals,
        mean_boxes_per_image,
        proposal_recall,
    )
    from ohemcli.data.splits import open_dataset

    dataset = open_dataset(data, split, images=images)
    source = str(from_mat) if from_mat is not None else SELECTIVE_SEARCH
    start = time.perf_counter()
    boxes = load_proposals(
        dataset,
        source=source,
        max_boxes=max_boxes,
        workers=workers,
        max_side=ss_max_side,
    )
    seconds = time.perf_counter() - start
    typer.echo(f"images:          {len(dataset)}")
    typer.echo(f"boxes per image: {mean_boxes_per_image(boxes):.1f}")
    for iou in (0.5, 0.7):
        typer.echo(f"recall@{iou}:      {proposal_recall(dataset, boxes, iou):.3f}")
    typer.echo(f"seconds:         {seconds:.1f}")


@data_app.command("download")
def download(
    dataset: Annotated[DownloadSet, typer.Argument(help="What to download.")],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="Folder to download into (vgg16-caffe: default the cache's weights/)."
        ),
    ] = None,
    caffemodel: Annotated[
        Path | None,
        typer.Option(
            "--caffemodel", help="vgg16-caffe: convert this VGG16 .caffemodel (no download)."
        ),
    ] = None,
) -> None:
    """Download and unpack VOC2007 (trainval + test, about 900 MB), the Fast R-CNN release's
    selective search boxes for it (voc2007-proposals, about 0.5 GB, md5-checked), or Caffe's VGG16
    ImageNet weights as a PyTorch state dict (vgg16-caffe, about 530 MB, md5-checked; or
    converted from the release's VGG16.v2.caffemodel with --caffemodel FILE, no Caffe needed).

    Give voc2007 and voc2007-proposals the same --root: the paper preset then finds
    ROOT/selective_search_data/ next to ROOT/VOCdevkit/VOC2007 on its own. vgg16-caffe goes where
    the paper preset (model.pretrained: caffe) looks for it, unless --root says otherwise.

    Example:  ohem data download voc2007 --root data   (then voc2007-proposals, same --root)
    """
    from ohemcli.data.download import download_voc2007, download_voc2007_proposals

    if dataset is DownloadSet.vgg16_caffe:
        _download_vgg16_caffe(root, caffemodel)
        return
    if caffemodel is not None:
        raise UserError(f"--caffemodel: only for vgg16-caffe, not {dataset.value}")
    if root is None:
        raise UserError(f"{dataset.value}: give --root, the folder to download into")
    if dataset is DownloadSet.voc2007:
        voc = download_voc2007(root)
        typer.echo(f"{dataset.value} is ready; use --data {voc}")
    else:
        folder = download_voc2007_proposals(root)
        typer.echo(
            f"{dataset.value} are ready in {folder}; the paper preset uses them for "
            f"{root / 'VOCdevkit' / 'VOC2007'}"
        )


def _download_vgg16_caffe(root: Path | None, caffemodel: Path | None) -> None:
    """Fetch (or check) the Caffe VGG16 file, or convert a caffemodel into it; then check that
    its tensors fit VGG16."""
    from ohemcli.data.download import download_vgg16_caffe
    from ohemcli.model.backbones import check_caffe_vgg16_state, verify_caffe_vgg16
    from ohemcli.model.caffe_vgg16 import CAFFE_FILE, caffe_vgg16_path

    dest = caffe_vgg16_path() if root is None else Path(root) / CAFFE_FILE
    if caffemodel is None:
        download_vgg16_caffe(dest)
    else:
        import torch

        from ohemcli.fileio import atomic_write
        from ohemcli.model.caffemodel import read_caffemodel

        state = read_caffemodel(caffemodel)  # Caffe's layer names: conv1_1.weight, fc6.bias
        # Checked before the write, and written atomically: a refused file never replaces the
        # good weights already in the cache.
        check_caffe_vgg16_state(state, str(caffemodel))
        atomic_write(dest, lambda tmp: torch.save(state, tmp))
    verify_caffe_vgg16(dest)
    use = "--pretrained caffe finds it" if root is None else f"use --weights {dest}"
    typer.echo(f"vgg16-caffe is ready in {dest}; {use}")


@data_app.command("convert")
def convert_command(
    data: DataOpt,
    to: Annotated[Format, typer.Option("--to", help="The format to write: coco or voc.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to create (must not exist).")],
    images: ImagesOpt = None,
) -> None:
    """Write a data set in the other format, one split of the source after another.

    --to coco writes COCO's layout (OUT/annotations/instances_SPLIT.json, OUT/SPLIT/ images);
    --to voc a VOC root. The splits are trainval and test of a VOC root, every split of a COCO
    set; --data OUT reads the result with the same split names. Written into a temporary folder
    and renamed at the end: an interrupted conversion leaves nothing behind.

    Example:  ohem data convert --data ../shared/data/bccd --to coco --out data/bccd-coco
    (and back: ohem data convert --data data/bccd-coco --to voc --out data/bccd-voc)
    """
    from ohemcli.data.convert import convert

    splits = convert(data, to.value, out, images)
    typer.echo(f"wrote {', '.join(splits)} as {to.value} to {out}")
