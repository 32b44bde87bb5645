"""Average precision, exactly as the Pascal VOC devkit computes it (COCO AP: ``evaluation.coco``).

Pure maths on numpy arrays; reading files and printing live elsewhere (``results_files``,
``cli.eval``). The VOC rules (``VOCevaldet.m``, and py-faster-rcnn's ``voc_eval``):

* detections of a class are ranked by score across all images with a *stable* sort (ties keep
  file order, as MATLAB's ``sort`` does);
* each detection is matched to the ground-truth box of highest IoU in its image (difficult ones
  included; the first such box on a tie), with the +1 pixel convention ``w = x2 - x1 + 1``;
* IoU strictly above the threshold on a non-difficult box not yet claimed: true positive; on a box
  already claimed: false positive; on a difficult box: ignored (neither); otherwise false positive;
* difficult boxes are not positives.

Our one rule the devkit leaves undefined: a class with **no positives** has no recall, so its AP is
NaN (``null`` in JSON) and it is left out of the mAP, as COCO does. (The MATLAB devkit computes
an empty AP; py-faster-rcnn gives 0 for voc07 and NaN for voc10.) It never happens on VOC07 test,
where every class has positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from ohemcli.data.voc import ImageRecord
from ohemcli.evaluation.results_files import ClassDetections, Detections

APMetric = Literal["voc07", "voc10"]
ClassGT = Mapping[str, tuple[np.ndarray, np.ndarray]]  # image_id -> (boxes (G,4), difficult (G,))

# The 11 recall thresholds of VOC07. k / 10 is the double nearest to k/10, and so is tp / npos when
# recall is exactly k/10 (IEEE division rounds correctly), so `recall >= t` holds exactly when it
# should. (np.arange(0, 1.1, 0.1), as in py-faster-rcnn, drifts: its 0.3 is 0.30000000000000004.)
VOC07_RECALL_THRESHOLDS = np.arange(11) / 10.0


@dataclass(frozen=True)
class ClassResult:
    """The evaluation of one class. ``recall``/``precision`` have one entry per ranked detection."""

    ap: float  # NaN when the class has no positives
    num_gt: int  # non-difficult ground-truth boxes (the positives)
    num_det: int
    recall: np.ndarray  # (D,) cumulative; NaN when num_gt == 0
    precision: np.ndarray  # (D,) cumulative
    # The ranked detections themselves (what evaluation.matches keeps for the bootstrap):
    image: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (D,) image index
    tp: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (D,)
    fp: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (D,) (neither: ignored)


@dataclass(frozen=True)
class VOCResult:
    """Per-class AP and its mean over the classes that have positives."""

    metric: APMetric
    mAP: float
    ap: dict[str, float]
    num_gt: dict[str, int]
    num_det: dict[str, int]
    per_class: dict[str, ClassResult]
    num_images: int
    # (num_images, num_classes) non-difficult ground-truth boxes per image and class
    positives: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))


def voc_ap(recall: np.ndarray, precision: np.ndarray, metric: APMetric) -> float:
    """AP from a precision/recall curve (one point per ranked detection; recall non-decreasing).

    ``voc07``: the mean over t in 0, 0.1, ..., 1 of the highest precision at recall >= t (0 if the
    curve never reaches t). ``voc10``: the area under the precision envelope (precision made
    non-increasing from the right), between recall 0 and 1.
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(1, -1)
    prec = np.asarray(precision, dtype=np.float64).reshape(1, -1)
    return float(voc_ap_batch(rec, prec, metric)[0])


def voc_ap_batch(recall: np.ndarray, precision: np.ndarray, metric: APMetric) -> np.ndarray:
    """:func:`voc_ap` of each row of (B, D) curves at once (the bootstrap scores many curves).

    Recall must be non-decreasing along each row, so that "recall >= t" holds on a suffix: the
    highest precision there is the suffix maximum at the suffix's first point.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    rows, n = rec.shape
    if metric == "voc07":
        if n == 0:
            return np.zeros(rows)
        envelope = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
        total = np.zeros(rows)
        for t in VOC07_RECALL_THRESHOLDS:
            first = (rec < t).sum(axis=1)  # index of the first point with recall >= t
            reached = first < n
            best = envelope[np.arange(rows), np.minimum(first, n - 1)]
            total += np.where(reached, best, 0.0)
        return total / 11.0
    if metric == "voc10":
        mrec = np.concatenate((np.zeros((rows, 1)), rec, np.ones((rows, 1))), axis=1)
        mpre = np.concatenate((np.zeros((rows, 1)), prec, np.zeros((rows, 1))), axis=1)
        mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]  # the monotone envelope
        # Segments where recall does not move have zero width and add nothing.
        return np.sum((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:], axis=1)
    raise ValueError(f"unknown AP metric {metric!r} (expected 'voc07' or 'voc10')")


def _best_match(
    det_img: np.ndarray, det_boxes: np.ndarray, gt_img: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection: the highest IoU with a GT box of its image (-inf if none) and that box.

    Vectorised over every (detection, GT of the same image) pair; on a tie the GT listed first wins,
    as with ``np.argmax`` in the per-detection loop.
    """
    num_det = len(det_img)
    ovmax = np.full(num_det, -np.inf)
    jmax = np.zeros(num_det, dtype=np.int64)
    if num_det == 0 or len(gt_img) == 0:
        return ovmax, jmax
    by_image = np.argsort(gt_img, kind="stable")
    size = int(max(gt_img.max(), det_img.max())) + 1
    counts = np.bincount(gt_img, minlength=size)
    starts = np.cumsum(counts) - counts
    per_det = counts[det_img]  # how many GT boxes each detection is compared with
    pair_start = np.cumsum(per_det) - per_det
    pair_det = np.repeat(np.arange(num_det), per_det)
    within = np.arange(int(per_det.sum())) - np.repeat(pair_start, per_det)
    pair_gt = by_image[np.repeat(starts[det_img], per_det) + within]
    # Imported here so that ``ohem report``, which rescores saved matches, never loads torch.
    from ohemcli.boxes import iou_np

    iou = iou_np(det_boxes[pair_det], gt_boxes[pair_gt], plus_one=True)
    has_gt = per_det > 0
    ovmax[has_gt] = np.maximum.reduceat(iou, pair_start[has_gt])
    is_max = np.flatnonzero(iou == ovmax[pair_det])
    first = np.ones(len(is_max), dtype=bool)  # pair_det is sorted: keep its first maximum
    first[1:] = pair_det[is_max[1:]] != pair_det[is_max[:-1]]
    jmax[pair_det[is_max[first]]] = pair_gt[is_max[first]]
    return ovmax, jmax


def _tp_fp(
    ovmax: np.ndarray, jmax: np.ndarray, gt_difficult: np.ndarray, iou_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """True/false-positive flags of detections in rank order (both False: ignored)."""
    hit = ovmax > iou_thresh  # strictly greater, as the devkit
    on_difficult = np.zeros_like(hit)
    on_difficult[hit] = gt_difficult[jmax[hit]]
    claims = np.flatnonzero(hit & ~on_difficult)
    # A GT box is claimed by the best-ranked detection whose best match it is; the later ones that
    # hit it are duplicates. This is what the devkit's sequential loop does, without the loop.
    _, first = np.unique(jmax[claims], return_index=True)
    tp = np.zeros_like(hit)
    tp[claims[first]] = True
    fp = ~hit | (hit & ~on_difficult & ~tp)
    return tp, fp


def _evaluate_arrays(
    det_img: np.ndarray,
    scores: np.ndarray,
    boxes: np.ndarray,
    gt_img: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    metric: APMetric,
    iou_thresh: float,
) -> ClassResult:
    """``evaluate_class`` on integer image indices."""
    order = np.argsort(-scores, kind="stable")  # ties keep file order, like MATLAB's sort
    ovmax, jmax = _best_match(det_img[order], boxes[order], gt_img, gt_boxes)
    tp, fp = _tp_fp(ovmax, jmax, gt_difficult, iou_thresh)
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(fp, dtype=np.float64)
    num_gt = int((~gt_difficult).sum())
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    ranked = {"image": det_img[order], "tp": tp, "fp": fp}
    if num_gt == 0:  # no positives: recall and AP are undefined (see the module docstring)
        nan = np.full(len(order), np.nan)
        return ClassResult(float("nan"), 0, len(order), nan, precision, **ranked)
    recall = tp_cum / num_gt
    ap = voc_ap(recall, precision, metric)
    return ClassResult(ap, num_gt, len(order), recall, precision, **ranked)


def evaluate_class(
    dets: ClassDetections, gt: ClassGT, metric: APMetric = "voc07", iou_thresh: float = 0.5
) -> ClassResult:
    """Evaluate the detections of one class against its ground truth (see the module docstring).

    ``gt`` maps image id to (boxes (G,4) 0-based, difficult (G,) bool) for this class; a detection
    in an image that is not a key has nothing to match, so it is a false positive.
    """
    index = {image_id: i for i, image_id in enumerate(gt)}
    for image_id in dets.image_ids:
        index.setdefault(image_id, len(index))
    gt_img = np.repeat(np.arange(len(gt)), [len(b) for b, _ in gt.values()])
    gt_boxes = _stack_boxes([b for b, _ in gt.values()])
    gt_diff = np.concatenate(
        [np.asarray(d, bool).reshape(-1) for _, d in gt.values()] + [_NO_FLAGS]
    )
    det_img = np.array([index[i] for i in dets.image_ids], dtype=np.int64)
    args = (det_img, dets.scores, dets.boxes, gt_img, gt_boxes, gt_diff)
    return _evaluate_arrays(*args, metric, iou_thresh)


_NO_FLAGS = np.zeros(0, dtype=bool)  # no flags, so that concatenating nothing works


def _stack_boxes(boxes: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate (G,4) box arrays as float64 (0 boxes give shape (0,4))."""
    return np.concatenate(
        [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes] + [np.zeros((0, 4))]
    )


def evaluate_voc(
    dets: Detections,
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    metric: APMetric = "voc07",
    iou_thresh: float = 0.5,
) -> VOCResult:
    """VOC AP of every class in ``classes`` (label i+1 is ``classes[i]``) over ``records``.

    A class missing from ``dets`` has no detections; keys of ``dets`` not in ``classes`` are
    ignored. A detection on an image not in ``records`` is a ValueError.
    """
    index = {r.image_id: i for i, r in enumerate(records)}
    gt_img = np.repeat(np.arange(len(records)), [len(r.labels) for r in records])
    gt_boxes = _stack_boxes([r.boxes for r in records])
    gt_labels = np.concatenate([r.labels for r in records] + [np.zeros(0, np.int64)])
    gt_diff = np.concatenate([r.difficult for r in records] + [_NO_FLAGS]).astype(bool)
    per_class: dict[str, ClassResult] = {}
    for k, name in enumerate(classes):
        cd = dets.get(name) or ClassDetections()
        try:
            det_img = np.array([index[i] for i in cd.image_ids], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"class '{name}': detection on image {exc} not in the split") from None
        mine = gt_labels == k + 1
        args = (det_img, cd.scores, cd.boxes, gt_img[mine], gt_boxes[mine], gt_diff[mine])
        per_class[name] = _evaluate_arrays(*args, metric, iou_thresh)
    positives = np.stack(
        [np.bincount(gt_img[(gt_labels == k + 1) & ~gt_diff], minlength=len(records))
         for k in range(len(classes))], axis=1,
    ) if classes else np.zeros((len(records), 0), np.int64)  # fmt: skip
    return replace(_collect(per_class, metric, len(records)), positives=positives)


def _collect(per_class: dict[str, ClassResult], metric: APMetric, num_images: int) -> VOCResult:
    aps = {name: r.ap for name, r in per_class.items()}
    defined = [ap for ap in aps.values() if not np.isnan(ap)]
    return VOCResult(
        metric=metric,
        mAP=float(np.mean(defined)) if defined else float("nan"),
        ap=aps,
        num_gt={name: r.num_gt for name, r in per_class.items()},
        num_det={name: r.num_det for name, r in per_class.items()},
        per_class=per_class,
        num_images=num_images,
    )


def with_metric(result: VOCResult, metric: APMetric) -> VOCResult:
    """The same matching scored with another AP rule (no need to match the detections again)."""
    per_class = {
        name: r if np.isnan(r.ap) else replace(r, ap=voc_ap(r.recall, r.precision, metric))
        for name, r in result.per_class.items()
    }
    return replace(_collect(per_class, metric, result.num_images), positives=result.positives)
