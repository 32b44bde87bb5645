"""The VOC devkit's matching, one detection at a time: the oracle for the vectorised evaluator.

A straight port of the logic of py-faster-rcnn's ``voc_eval`` (stable sort, first argmax, IoU
strictly above the threshold, difficult boxes ignored, duplicates false positives). The tests and
``benchmarks/bench_metrics.py`` both compare ``ohemcli.evaluation.voc_ap`` against it.
"""

from __future__ import annotations

import math

import numpy as np

from ohemcli.evaluation.results_files import ClassDetections
from ohemcli.evaluation.voc_ap import ClassGT


def reference_class(cd: ClassDetections, truth: ClassGT, metric: str, thresh: float = 0.5):
    """py-faster-rcnn's voc_eval, one detection at a time (stable sort, first argmax)."""
    npos = sum(int((~d).sum()) for _, d in truth.values())
    claimed = {k: np.zeros(len(b), bool) for k, (b, _) in truth.items()}
    order = sorted(range(len(cd)), key=lambda i: -cd.scores[i])  # sorted() is stable
    tp, fp = np.zeros(len(cd)), np.zeros(len(cd))
    for rank, d in enumerate(order):
        bb = cd.boxes[d]
        boxes, difficult = truth.get(cd.image_ids[d], (np.zeros((0, 4)), np.zeros(0, bool)))
        ovmax, jmax = -np.inf, -1
        if len(boxes):
            iw = np.maximum(np.minimum(boxes[:, 2], bb[2]) - np.maximum(boxes[:, 0], bb[0]) + 1, 0)
            ih = np.maximum(np.minimum(boxes[:, 3], bb[3]) - np.maximum(boxes[:, 1], bb[1]) + 1, 0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax, jmax = overlaps.max(), int(overlaps.argmax())
        if ovmax > thresh:
            if not difficult[jmax]:
                if not claimed[cd.image_ids[d]][jmax]:
                    tp[rank] = 1
                    claimed[cd.image_ids[d]][jmax] = True
                else:
                    fp[rank] = 1
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos if npos else np.full(len(cd), np.nan)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, (reference_ap(rec, prec, metric) if npos else math.nan)


def reference_ap(rec: np.ndarray, prec: np.ndarray, metric: str) -> float:
    if metric == "voc07":
        ap = 0.0
        for k in range(11):
            above = prec[rec >= k / 10]
            ap += (above.max() if above.size else 0.0) / 11
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
