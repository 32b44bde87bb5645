"""Inference over a split: the model's detections of every test image, grouped by class
(:func:`detect_split`), and a run folder's model loaded for it (:func:`load_run_model`)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ohemcli.config import (
    ExperimentConfig,
    input_norm,
    load_config,
)
from ohemcli.data.batching import TestImages
from ohemcli.data.prefetch import loaded_ahead
from ohemcli.data.splits import SplitData
from ohemcli.device import loader_workers
from ohemcli.errors import UserError
from ohemcli.evaluation.proposal_recall import RECALL_TOPS, ProposalRecall, scored_gt
from ohemcli.evaluation.protocols import FastRCNNTest
from ohemcli.evaluation.results_files import ClassDetections, Detections
from ohemcli.model.fast_rcnn import FastRCNN, build_model, without_pretrained
from ohemcli.progress import make_progress
from ohemcli.runs.checkpointer import read_checkpoint, saved_weights
from ohemcli.runs.paths import RunPaths


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
    recall: ProposalRecall | None = None,
) -> Detections:
    """Run the detector over every image of ``split``; boxes in original-image coordinates.

    ``recall``, when given, counts each image's proposals (the fixed ones, or the RPN's at
    :func:`proposals_for_detection`) against its ground truth.

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
            features, offered, rois = proposals_for_detection(
                model, batch.images, sample.rois, size
            )
            if recall is not None:
                recall.add(offered / sample.factor, scored_gt(split.dataset.records[len(ids)]))
            detected = model.detect(batch.images, [rois], cfg.eval, [size], features)
            boxes, scores, labels = detected[0]
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


def proposals_for_detection(
    model: FastRCNN, images: Tensor, fixed: Tensor, size: tuple[int, int]
) -> tuple[Tensor | None, Tensor, Tensor]:
    """One test image's features (None: not computed), the proposals it offers (best first for
    the RPN, at least 1,000 of them for the recall) and those the detector scores.

    Under fast-rcnn both are the image's ``fixed`` proposals. Under faster-rcnn the RPN proposes
    ``model.rpn_post_nms_test`` boxes (300, py-faster-rcnn's test setting) for detection; its
    NMS keeps them best first, so the first 300 of a 1,000-proposal pass are that pass's 300.
    """
    rpn = model.rpn
    if rpn is None:
        return None, fixed, fixed
    features = model.features(images)
    pre, post = rpn.counts("testing")
    with rpn.test_counts(max(pre, RECALL_TOPS[-1]), max(post, RECALL_TOPS[-1])):
        offered = rpn(features, [size])[0][0]
    return features, offered, offered[:post]


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
