"""Scoring a split's detections: VOC and COCO AP, the results files, ``metrics.json`` and the
per-detection matches (:func:`score_detections`), and the test protocol a number was measured
with (:func:`eval_protocol`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ohemcli.config import (
    FAST_RCNN_MAX_PER_IMAGE,
    FAST_RCNN_PER_CLASS,
    EvalConfig,
    ExperimentConfig,
    protocol_name,
)
from ohemcli.data.coco.dataset import COCODataset
from ohemcli.data.dataset import Dataset
from ohemcli.data.splits import SplitData
from ohemcli.evaluation.coco import evaluate_coco_json
from ohemcli.evaluation.coco_results import write_coco_results
from ohemcli.evaluation.matches import matches_from_result, save_matches
from ohemcli.evaluation.metrics import coco_numbers, evaluate_all, voc_metric
from ohemcli.evaluation.results_files import Detections, write_results_files
from ohemcli.evaluation.voc_ap import evaluate_voc
from ohemcli.fileio import atomic_write_json
from ohemcli.runs.paths import EvalPaths


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


def score_detections(
    dets: Detections,
    cfg: ExperimentConfig,
    split: SplitData,
    out_dir: Path | None = None,
    metric: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``split``'s detections and (with ``out_dir``) write the devkit results files,
    ``detections_coco.json``, ``metrics.json`` and the per-detection matches. ``extra`` joins
    the result (the proposals' recall)."""
    metric = metric or cfg.eval.metric
    records, classes = split.dataset.records, split.dataset.classes
    voc = evaluate_voc(dets, records, classes, voc_metric(metric))
    coco = coco_source(dets, split.dataset)
    # metric: a str that config_rules checked against evaluate_all's Literal
    result = evaluate_all(dets, records, classes, metric, voc=voc, coco=coco)  # type: ignore[arg-type]
    result["eval_protocol"] = eval_protocol(cfg.eval)
    result.update(extra or {})
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


def coco_source(dets: Detections, dataset: Dataset) -> Callable[[], dict[str, Any]] | None:
    """How COCO AP is computed for ``dataset``: on a COCO set, pycocotools on its original json;
    elsewhere None (``evaluate_all`` converts the records)."""
    if isinstance(dataset, COCODataset):
        return partial(evaluate_coco_json, dets, dataset)
    return None
