"""Inference over a split, results files and metrics; ``evaluate_run`` for ``ohem eval RUN``."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ohemcli.config import (
    FAST_RCNN_MAX_PER_IMAGE,
    FAST_RCNN_PER_CLASS,
    TEST_PROTOCOLS,
    EvalConfig,
    ExperimentConfig,
    input_norm,
    load_config,
    protocol_name,
)
from ohemcli.data.batching import TestImages
from ohemcli.data.coco import COCODataset
from ohemcli.data.prefetch import loaded_ahead
from ohemcli.data.splits import SplitData, load_split
from ohemcli.device import loader_workers, resolve_device
from ohemcli.errors import UserError
from ohemcli.evaluation.coco import evaluate_coco_json
from ohemcli.evaluation.coco_results import read_coco_results, write_coco_results
from ohemcli.evaluation.matches import matches_from_result, save_matches
from ohemcli.evaluation.metrics import coco_numbers, evaluate_all, voc_metric
from ohemcli.evaluation.protocols import FastRCNNTest
from ohemcli.evaluation.results_files import ClassDetections, Detections, write_results_files
from ohemcli.evaluation.voc_ap import evaluate_voc
from ohemcli.fileio import atomic_write_json
from ohemcli.model.fast_rcnn import FastRCNN, build_model, without_pretrained
from ohemcli.progress import make_progress
from ohemcli.runs.checkpointer import read_checkpoint, saved_weights
from ohemcli.runs.paths import EvalPaths, RunPaths


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees everything else).

    Turning tens of thousands of detections into Python numbers (the COCO json, the results
    files) allocates enough containers to set off full collections, each of which walks every
    object of a process that holds torch and a model: measured, 0.5 s of a 0.53 s COCO
    conversion. Nothing the evaluation computes depends on when cycles are collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def detect_split(
    model: FastRCNN,
    split: SplitData,
    cfg: ExperimentConfig,
    device: torch.device,
    show_progress: bool = True,
) -> Detections:
    """Run the detector over every image of ``split``; boxes in original-image coordinates.

    Under ``torch.inference_mode`` (no autograd bookkeeping at all). Each image's detections stay
    tensors until the end, where one conversion and one stable sort by label group them per class
    (images in split order, each image's detections in model output order): the arrays, and so
    the files written from them, are the ones a per-image, per-class loop gives.
    """
    was_training = model.training
    model.eval()
    images = TestImages(
        split.dataset, split.proposals, cfg.data.scale, cfg.data.max_size, input_norm(cfg.model)
    )  # the normalisation the run trained with (recorded in its config.yaml)
    loader = loaded_ahead(images, loader_workers(cfg.data.workers))
    adaptive = FastRCNNTest(len(images)) if cfg.eval.protocol == "fast-rcnn" else None
    ids: list[str] = []
    found: list[tuple[Tensor, Tensor, Tensor]] = []
    with make_progress(disable=not show_progress) as progress, torch.inference_mode():
        task = progress.add_task(f"detect {split.dataset.split}", total=len(images))
        for batch in loader:
            batch = batch.to(device)
            sample = batch.samples[0]
            size = (int(sample.image.shape[1]), int(sample.image.shape[2]))
            boxes, scores, labels = model.detect(batch.images, [sample.rois], cfg.eval, [size])[0]
            boxes = boxes / sample.factor  # float32: the grouping below must not round them
            if adaptive is not None:  # thresholds over the whole set: kept, decided at the end
                adaptive.add(len(ids), *_as_numpy(boxes, scores, labels))
            else:
                found.append((boxes.cpu(), scores.cpu(), labels.cpu()))
            ids.append(sample.image_id)
            progress.advance(task)
    if was_training:
        model.train()
    if adaptive is not None:
        per_class: dict[int, list[tuple[str, np.ndarray, np.ndarray]]] = {}
        for image, label, kept_boxes, kept_scores in adaptive.finish(cfg.eval.nms):
            per_class.setdefault(label, []).append((ids[image], kept_scores, kept_boxes))
        return _to_detections(per_class, split.dataset.classes)
    return _group_by_class(found, ids, split.dataset.classes)


def _as_numpy(boxes: Tensor, scores: Tensor, labels: Tensor) -> tuple[np.ndarray, ...]:
    """Detections as float64 boxes and scores (converted from float32) and integer labels."""
    return (
        boxes.cpu().numpy().astype(np.float64),
        scores.cpu().numpy().astype(np.float64),
        labels.cpu().numpy(),
    )


def _group_by_class(
    found: list[tuple[Tensor, Tensor, Tensor]], ids: list[str], classes: tuple[str, ...]
) -> Detections:
    """Per-image detections -> per-class ones: images in order, each image's in output order."""
    counts = [len(scores) for _, scores, _ in found]
    if not found or sum(counts) == 0:
        return _to_detections({}, classes)
    boxes, scores, labels = _as_numpy(*(torch.cat(parts) for parts in zip(*found, strict=True)))
    image = np.repeat(np.arange(len(found)), counts)
    order = np.argsort(labels, kind="stable")  # stable: keeps image, then output, order
    labels, image, scores, boxes = labels[order], image[order], scores[order], boxes[order]
    dets: Detections = {}
    for label, name in enumerate(classes, start=1):
        lo, hi = np.searchsorted(labels, [label, label + 1])
        dets[name] = ClassDetections(
            image_ids=[ids[i] for i in image[lo:hi].tolist()],
            scores=scores[lo:hi],
            boxes=boxes[lo:hi],
        )
    return dets


def _to_detections(
    per_class: dict[int, list[tuple[str, np.ndarray, np.ndarray]]], classes: tuple[str, ...]
) -> Detections:
    dets: Detections = {}
    for label, name in enumerate(classes, start=1):
        parts = per_class.get(label, [])
        dets[name] = ClassDetections(
            image_ids=[image_id for image_id, scores, _ in parts for _ in range(len(scores))],
            scores=np.concatenate([s for _, s, _ in parts]) if parts else np.zeros(0),
            boxes=np.concatenate([b for _, _, b in parts]) if parts else np.zeros((0, 4)),
        )
    return dets


def eval_protocol(cfg: EvalConfig) -> dict[str, Any]:
    """The test protocol a number was measured with (``eval_protocol`` in metrics/summary JSON),
    by name and with its limits.

    ``default`` keeps at most 100 detections per image scoring over 0.05 (py-faster-rcnn's and
    the later fast-rcnn's ``test_net``); ``ohem-release`` 2000 over 0.00001 (the OHEM release's
    ``experiments/scripts/fast_rcnn_ohem.sh``); ``fast-rcnn`` adapts per-class thresholds to keep
    about 40 detections per class per image over the test set (Fast R-CNN's first ``test.py``,
    see ohemcli.evaluation.protocols). All use per-class NMS (0.3 in the presets).
    """
    name = protocol_name(cfg)
    if name == "fast-rcnn":
        return {
            "name": name,
            "per_class_per_image": FAST_RCNN_PER_CLASS,
            "max_per_class_per_image": FAST_RCNN_MAX_PER_IMAGE,
            "nms": cfg.nms,
        }
    return {
        "name": name,
        "max_dets": cfg.max_dets,
        "score_thresh": cfg.score_thresh,
        "nms": cfg.nms,
    }


def evaluate_model(
    model: FastRCNN,
    cfg: ExperimentConfig,
    split: SplitData,
    device: torch.device,
    out_dir: Path | None = None,
    metric: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Detect, score and (with ``out_dir``) write the devkit results files and ``metrics.json``.

    Python's cyclic garbage collector is paused meanwhile (see :func:`no_cyclic_gc`).
    """
    with no_cyclic_gc():
        dets = detect_split(model, split, cfg, device, show_progress)
        return score_detections(dets, cfg, split, out_dir, metric)


def score_detections(
    dets: Detections,
    cfg: ExperimentConfig,
    split: SplitData,
    out_dir: Path | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Score ``split``'s detections and (with ``out_dir``) write the devkit results files,
    ``detections_coco.json``, ``metrics.json`` and the per-detection matches."""
    metric = metric or cfg.eval.metric
    records, classes = split.dataset.records, split.dataset.classes
    voc = evaluate_voc(dets, records, classes, voc_metric(metric))
    coco = coco_source(dets, split.dataset)
    # metric: a str that config_rules checked against evaluate_all's Literal
    result = evaluate_all(dets, records, classes, metric, voc=voc, coco=coco)  # type: ignore[arg-type]
    result["eval_protocol"] = eval_protocol(cfg.eval)
    if (
        out_dir is not None
        and coco is not None
        and "coco" not in result
        and "metrics" not in result
    ):
        # A COCO set's final evaluation always carries COCO AP as well (report's "COCO AP").
        result["coco"] = coco_numbers(coco())
    if out_dir is not None:
        files = EvalPaths(out_dir)
        write_results_files(dets, out_dir, split.dataset.split)
        write_coco_results(dets, split.dataset, files.coco_results)  # for other tools
        atomic_write_json(files.metrics, result)
        # Per-detection matches, for the bootstrap over test images in `ohem report`.
        save_matches(files.matches, matches_from_result(voc, [r.image_id for r in records]))
    return result


def coco_source(dets: Detections, dataset: Any) -> Callable[[], dict[str, Any]] | None:
    """How COCO AP is computed for ``dataset``: on a COCO set, pycocotools on its original json;
    elsewhere None (``evaluate_all`` converts the records)."""
    if isinstance(dataset, COCODataset):
        return partial(evaluate_coco_json, dets, dataset)
    return None


def load_run_model(
    run_dir: Path, device: torch.device
) -> tuple[FastRCNN, ExperimentConfig, tuple[str, ...]]:
    """The model of a run folder, from its ``config.yaml`` and ``checkpoint.pt``."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run folder does not exist")
    paths = RunPaths(run_dir)
    cfg = load_config(paths.config)
    weights, classes = saved_weights(read_checkpoint(paths.checkpoint))
    model = build_model(without_pretrained(cfg), len(classes), device)  # weights: checkpoint's
    model.load_state_dict(weights)
    return model, cfg, classes


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    metric: str = "voc07",
    device: str = "auto",
    show_progress: bool = True,
    max_dets: int | None = None,
    score_thresh: float | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on ``split``; returns the metrics, written to
    :func:`reeval_dir`.

    ``protocol`` (a test protocol's name), or ``max_dets`` and ``score_thresh`` (then the
    protocol is "custom"), override the run's ``eval`` config. The run's own ``eval/`` is never
    written: what the run recorded stays what the report reads, whatever is asked here.
    """
    dev = resolve_device(device)
    model, cfg, classes = load_run_model(Path(run_dir), dev)
    cfg = _with_classes(cfg, classes)
    cfg = _with_protocol(cfg, max_dets, score_thresh, protocol)
    data = load_split(cfg, split, show_progress)
    out = reeval_dir(Path(run_dir), cfg, split, metric)
    return evaluate_model(model, cfg, data, dev, out, metric, show_progress)


def reeval_dir(run_dir: Path, cfg: ExperimentConfig, split: str, metric: str) -> Path:
    """The folder of a re-evaluation, named by what it is: ``RUN/eval-<split>-<protocol>-<metric>``
    with a custom protocol's limits spelled out (``custom-max1-score0``)."""
    e = cfg.eval
    protocol = protocol_name(e)
    if protocol == "custom":
        protocol = f"custom-max{e.max_dets}-score{e.score_thresh:g}"
    return RunPaths(Path(run_dir)).reeval_dir(split, protocol, metric)


def _with_protocol(
    cfg: ExperimentConfig,
    max_dets: int | None,
    score_thresh: float | None,
    protocol: str | None = None,
) -> ExperimentConfig:
    from dataclasses import replace

    if max_dets is not None and max_dets < 1:
        raise UserError(f"--max-dets {max_dets}: must be at least 1")
    if score_thresh is not None and not 0.0 <= score_thresh <= 1.0:
        raise UserError(f"--score-thresh {score_thresh}: must be in [0, 1]")
    limits_given = max_dets is not None or score_thresh is not None
    if protocol is not None and limits_given:
        raise UserError("--test-protocol and --max-dets/--score-thresh: give one")
    e = cfg.eval
    if protocol is not None:
        e = replace(e, protocol=protocol)
        if protocol in TEST_PROTOCOLS:
            e = replace(e, max_dets=TEST_PROTOCOLS[protocol][0])
            e = replace(e, score_thresh=TEST_PROTOCOLS[protocol][1])
    elif limits_given:
        e = replace(e, protocol="custom")
    e = replace(e, max_dets=e.max_dets if max_dets is None else max_dets)
    e = replace(e, score_thresh=e.score_thresh if score_thresh is None else score_thresh)
    return replace(cfg, eval=e)


def _with_classes(cfg: ExperimentConfig, classes: tuple[str, ...]) -> ExperimentConfig:
    """The run's class list fixes label order, whatever the data folder now implies."""
    from dataclasses import replace

    return replace(cfg, data=replace(cfg.data, classes=classes))


def evaluate_detections(
    detections: Path,
    data: str,
    split: str,
    metric: str,
    classes: list[str] | None = None,
    images: str | None = None,
) -> dict[str, Any]:
    """Score detections against a split of a VOC root, ``synth`` or a COCO set.

    ``detections`` is a folder of devkit results files, or a COCO results json
    (``[{image_id, category_id, bbox, score}]``, the data set's ids).
    """
    from ohemcli.data.splits import open_dataset
    from ohemcli.evaluation.results_files import read_results_files

    dataset = open_dataset(data, split, classes, images=images)
    path = Path(detections)
    if path.is_file() and path.suffix == ".json":
        dets = read_coco_results(path, dataset)
    else:
        ids = {r.image_id for r in dataset.records}
        dets = read_results_files(path, dataset.split, dataset.classes, ids)
    records, names = dataset.records, dataset.classes
    coco = coco_source(dets, dataset)
    # metric: a str that the CLI's choice checked against evaluate_all's Literal
    return evaluate_all(dets, records, names, metric, coco=coco)  # type: ignore[arg-type]


__all__ = [
    "EvalConfig",
    "detect_split",
    "eval_protocol",
    "evaluate_detections",
    "evaluate_model",
    "evaluate_run",
    "load_run_model",
]
