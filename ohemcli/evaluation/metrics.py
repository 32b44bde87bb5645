"""The JSON-ready metrics of an evaluation: VOC AP at the top, COCO AP where asked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from ohemcli.data.voc import ImageRecord
from ohemcli.evaluation.coco import COCO_KEYS, evaluate_coco
from ohemcli.evaluation.results_files import Detections
from ohemcli.evaluation.voc_ap import APMetric, VOCResult, evaluate_voc, with_metric


def _json_float(x: float) -> float | None:
    """NaN is not JSON: an undefined AP is written as null."""
    return None if np.isnan(x) else float(x)


def _voc_summary(r: VOCResult) -> dict[str, Any]:
    ap = {k: _json_float(v) for k, v in r.ap.items()}
    return {"metric": r.metric, "mAP": _json_float(r.mAP), "AP": ap, "num_images": r.num_images,
            "num_gt": r.num_gt, "num_det": r.num_det}  # fmt: skip


def coco_numbers(coco: dict[str, Any]) -> dict[str, float | None]:
    """The six COCO numbers of an ``evaluate_coco`` result, JSON-ready."""
    return {k: _json_float(coco[k]) for k in COCO_KEYS}


def _coco_summary(coco: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "metric": "coco", "mAP": _json_float(coco["AP"]),
            "AP": {k: _json_float(v) for k, v in coco["per_class"].items()},
            "coco": coco_numbers(coco)}  # fmt: skip


def voc_metric(metric: str) -> APMetric:
    """The VOC AP rule that ``evaluate_all(metric=...)`` puts at the top level."""
    return "voc10" if metric == "voc10" else "voc07"


def evaluate_all(
    dets: Detections,
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    metric: Literal["voc07", "voc10", "coco", "all"] = "voc07",
    voc: VOCResult | None = None,
    coco: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON-ready summary that ``ohem eval`` prints and runs save as ``eval/metrics.json``.

    Keys: ``metric``, ``mAP``, ``AP`` (class -> AP), ``num_images``, ``num_gt``, ``num_det``;
    ``coco`` adds ``coco`` (the six COCO numbers); ``all`` gives voc07 at the top level and every
    metric under ``metrics``. Undefined values are ``None``. ``voc``: the ``evaluate_voc`` result
    of these detections when the caller already has it (:func:`voc_metric` names its metric).
    ``coco``: what computes the COCO numbers (default: :func:`evaluate_coco` on ``records``; a COCO
    set's evaluation passes :func:`~ohemcli.evaluation.coco.evaluate_coco_json` on its own json).
    """
    if metric not in ("voc07", "voc10", "coco", "all"):
        raise ValueError(f"unknown metric {metric!r}")
    if voc is None or voc.metric != voc_metric(metric):
        voc = evaluate_voc(dets, records, classes, voc_metric(metric))
    base = _voc_summary(voc)
    if metric in ("voc07", "voc10"):
        return base
    numbers = coco() if coco is not None else evaluate_coco(dets, records, classes)
    summary = _coco_summary(numbers, base)
    if metric == "coco":
        return summary
    metrics = {"voc07": base, "voc10": _voc_summary(with_metric(voc, "voc10")), "coco": summary}
    return {**base, "metric": "all", "metrics": metrics}
