"""Evaluation of a model, a run folder or a folder of results files: inference
(``evaluation.inference``) then scoring (``evaluation.scoring``); ``evaluate_run`` for
``ohem eval RUN``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ohemcli.config import (
    TEST_PROTOCOLS,
    EvalConfig,
    ExperimentConfig,
    protocol_name,
)
from ohemcli.data.splits import SplitData, load_split
from ohemcli.device import resolve_device
from ohemcli.errors import UserError
from ohemcli.evaluation.coco_results import read_coco_results
from ohemcli.evaluation.inference import detect_split, load_run_model, no_cyclic_gc
from ohemcli.evaluation.metrics import evaluate_all
from ohemcli.evaluation.proposal_recall import ProposalRecall
from ohemcli.evaluation.scoring import coco_source, eval_protocol, score_detections
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.runs.paths import RunPaths


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
    recall = ProposalRecall()
    with no_cyclic_gc():
        dets = detect_split(model, split, cfg, device, show_progress, recall)
        proposals = {"proposal_source": proposal_source(cfg), "proposal_recall": recall.result()}
        return score_detections(dets, cfg, split, out_dir, metric, proposals)


def proposal_source(cfg: ExperimentConfig) -> str:
    """Where a run's RoIs come from: ``rpn``, or the ``data.proposals`` source."""
    return "rpn" if cfg.model.detector == "faster-rcnn" else cfg.data.proposals


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
