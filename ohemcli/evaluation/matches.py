"""The matching of an evaluation, kept so that a bootstrap over test images needs no re-matching.

VOC matching happens within an image, so resampling test images with replacement (image i drawn
m_i times) changes nothing but weights: each ranked detection's TP/FP flag counts m_i times and
each class's positives are sum_i m_i * positives[i]. ``weighted_map`` scores many such weightings
at once and equals evaluating on the images actually duplicated (tests/engine/test_matches.py).

Only the points where recall rises (true positives) can set an AP: a false positive keeps recall
and lowers precision, so the envelope never takes its value. A curve is therefore kept as its
true positives, each with the weighted count of false positives ranked above it, which the
product of the (B, images) weights with a sparse (images, true positives) count matrix gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from scipy import sparse

from ohemcli.errors import UserError
from ohemcli.evaluation.voc_ap import APMetric, VOCResult, voc_ap_batch
from ohemcli.fileio import atomic_write
from ohemcli.runs.records import Run

_KEYS = ("classes", "image_ids", "positives", "det_class", "det_image", "tp", "fp")


@dataclass(frozen=True)
class Matches:
    """Every class's ranked detections (grouped by class, rank order within) and positives."""

    classes: tuple[str, ...]
    image_ids: tuple[str, ...]
    positives: np.ndarray  # (images, classes) non-difficult ground-truth boxes
    det_class: np.ndarray  # (D,) class index of each ranked detection
    det_image: np.ndarray  # (D,) image index
    tp: np.ndarray  # (D,) bool
    fp: np.ndarray  # (D,) bool; neither flag: matched a difficult box, ignored


def matches_from_result(result: VOCResult, image_ids: list[str] | tuple[str, ...]) -> Matches:
    """The matches of an ``evaluate_voc`` result over images ``image_ids`` (its records' order)."""
    classes = tuple(result.per_class)
    parts = [result.per_class[name] for name in classes]
    cls = [np.full(len(r.image), k, np.int32) for k, r in enumerate(parts)]

    def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate([np.asarray(a, dtype) for a in arrays] + [np.zeros(0, dtype)])

    return Matches(
        classes=classes,
        image_ids=tuple(image_ids),
        positives=np.asarray(result.positives, np.int32).reshape(len(image_ids), len(classes)),
        det_class=cat(cls, np.int32),
        det_image=cat([r.image for r in parts], np.int32),
        tp=cat([r.tp for r in parts], bool),
        fp=cat([r.fp for r in parts], bool),
    )


def save_matches(path: Path, m: Matches) -> Path:
    """Write ``m`` as a compressed .npz (plain arrays, readable without pickle), atomically."""
    arrays = {
        "classes": np.array(m.classes, dtype=str),
        "image_ids": np.array(m.image_ids, dtype=str),
        "positives": m.positives,
        "det_class": m.det_class,
        "det_image": m.det_image,
        "tp": m.tp,
        "fp": m.fp,
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez_compressed(f, **cast(dict[str, Any], arrays))  # numpy types kwds as bool

    return atomic_write(path, write)


def load_matches(path: Path) -> Matches:
    """Read what :func:`save_matches` wrote; a broken or edited file is a one-line UserError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise UserError(f"{path}: not a matches file (missing {', '.join(missing)})")
            a = {k: z[k] for k in _KEYS}
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip, npy header, pickle refusal...: the file's fault
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: cannot read ({first})") from None
    problem = _array_problem(a)
    if problem:
        raise UserError(f"{path}: not a matches file ({problem})")
    return Matches(
        classes=tuple(str(c) for c in a["classes"]),
        image_ids=tuple(str(i) for i in a["image_ids"]),
        positives=a["positives"].reshape(len(a["image_ids"]), len(a["classes"])),
        det_class=a["det_class"].astype(np.int64),
        det_image=a["det_image"].astype(np.int64),
        tp=a["tp"].astype(bool),
        fp=a["fp"].astype(bool),
    )


def _is_int(a: np.ndarray) -> bool:
    return a.dtype.kind in "iu"


def _is_flag(a: np.ndarray) -> bool:
    return a.dtype == bool or (_is_int(a) and bool(np.isin(a, (0, 1)).all()))


def _array_problem(a: dict[str, np.ndarray]) -> str | None:
    """What makes the arrays of a matches file inconsistent (dtypes, shapes, ranges), or None.

    These are the arrays' own rules: a file that passes may still be edited consistently, which
    only rescoring it against the run's recorded mAP finds (``report.validate``).
    """
    classes, images = a["classes"], a["image_ids"]
    if any(x.ndim != 1 or x.dtype.kind != "U" for x in (classes, images)):
        return "classes and image_ids must be lists of names"
    if len(set(images.tolist())) != len(images):
        return "image_ids must be distinct names"
    n_det = a["det_class"].shape
    for key in ("det_class", "det_image", "tp", "fp"):
        if a[key].ndim != 1 or a[key].shape != n_det:
            return f"{key} must be one value per detection ({n_det[0] if n_det else '?'})"
    for key in ("det_class", "det_image", "positives"):
        if not _is_int(a[key]):
            return f"{key} must hold whole numbers, found {a[key].dtype}"
    if not (_is_flag(a["tp"]) and _is_flag(a["fp"])):
        return "tp and fp must be flags (true/false)"
    if a["positives"].size != len(images) * len(classes) or (a["positives"] < 0).any():
        return f"positives must be {len(images)} x {len(classes)} counts, none negative"
    for key, n in (("det_class", len(classes)), ("det_image", len(images))):
        if len(a[key]) and not (a[key].min() >= 0 and a[key].max() < n):
            return f"{key} must lie in [0, {n})"
    tp, fp = a["tp"].astype(bool), a["fp"].astype(bool)
    if (tp & fp).any():
        return "a detection is both tp and fp"
    # A ground-truth box is claimed once: no (image, class) has more TPs than positives.
    flat = a["det_image"][tp].astype(np.int64) * len(classes) + a["det_class"][tp]
    claimed = np.bincount(flat, minlength=len(images) * len(classes))
    if (claimed > a["positives"].reshape(-1)).any():
        return "more true positives than ground-truth boxes in some image"
    return None


def rescored_map(m: Matches, metric: APMetric = "voc07") -> float:
    """The mAP of ``m`` as saved (every test image once): what the run recorded, if the file
    is the run's own."""
    return float(weighted_map(m, np.ones((1, len(m.image_ids))), metric)[0])


@dataclass(frozen=True)
class _Curves:
    """The true positives of every class in rank order, and what weighting them needs."""

    tp_image: np.ndarray  # (T,) image of each true positive, classes one after another
    fp_before: sparse.csr_matrix  # (T, images): false positives ranked above each TP's segment
    bounds: np.ndarray  # (classes + 1,) where each class's TPs start in the T axis
    positives: np.ndarray  # (images, classes)


def _curves(m: Matches) -> _Curves:
    tp_image, rows, cols, bounds = [], [], [], [0]
    start = 0
    for k in range(len(m.classes)):
        sel = np.flatnonzero(m.det_class == k)  # rank order within the class
        tp, fp, img = m.tp[sel], m.fp[sel], m.det_image[sel]
        segment = np.cumsum(tp) - tp  # TPs ranked above each detection
        n_tp = int(tp.sum())
        # A false positive above the j-th TP counts towards it (and, through the cumsum in
        # weighted_map, every later TP); those below the last TP never touch an AP.
        counted = fp & (segment < n_tp)
        rows.append(start + segment[counted])
        cols.append(img[counted])
        tp_image.append(img[tp])
        start += n_tp
        bounds.append(start)
    fp_before = sparse.csr_matrix(
        (np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
        shape=(start, len(m.image_ids)),
    )  # duplicates (several FPs of one image in one segment) are summed
    return _Curves(np.concatenate(tp_image), fp_before, np.asarray(bounds), m.positives)


def weighted_ap(
    m: Matches, weights: np.ndarray, metric: APMetric = "voc07", chunk: int = 200
) -> np.ndarray:
    """Per-class AP under each row of image ``weights`` (B, images): a (B, classes) array.

    Row b scores the test set in which image i appears ``weights[b, i]`` times (integer weights:
    exactly as duplicating the images; 0 leaves an image out). A class without positives under a
    weighting has AP NaN, as in ``evaluation.voc_ap``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != len(m.image_ids):
        raise ValueError(f"weights must be (B, {len(m.image_ids)}), got {w.shape}")
    c = _curves(m)
    out = np.empty((len(w), len(m.classes)))
    for lo in range(0, len(w), chunk):
        out[lo : lo + chunk] = _weighted_chunk(c, w[lo : lo + chunk], metric)
    return out


def _weighted_chunk(c: _Curves, w: np.ndarray, metric: APMetric) -> np.ndarray:
    tp_cum = np.cumsum(w[:, c.tp_image], axis=1)  # (B, T), classes one after another
    fp_cum = np.cumsum(np.asarray((c.fp_before @ w.T).T), axis=1)
    npos = w @ c.positives  # (B, classes)
    eps = np.finfo(np.float64).eps
    aps = np.empty((len(w), len(c.bounds) - 1))
    for k, (lo, hi) in enumerate(zip(c.bounds[:-1], c.bounds[1:], strict=True)):
        # Restart both cumulative sums at the class's first TP.
        tp_k = tp_cum[:, lo:hi] - (tp_cum[:, lo - 1 : lo] if lo else 0.0)
        fp_k = fp_cum[:, lo:hi] - (fp_cum[:, lo - 1 : lo] if lo else 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = tp_k / npos[:, k : k + 1]
        precision = tp_k / np.maximum(tp_k + fp_k, eps)
        aps[:, k] = np.where(npos[:, k] > 0, voc_ap_batch(recall, precision, metric), np.nan)
    return aps


def weighted_map(m: Matches, weights: np.ndarray, metric: APMetric = "voc07") -> np.ndarray:
    """mAP (mean over the classes with positives) under each row of ``weights``: shape (B,)."""
    aps = weighted_ap(m, weights, metric)
    defined = ~np.isnan(aps)
    total = np.where(defined, aps, 0.0).sum(axis=1)
    count = defined.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def run_matches(run: Run) -> Matches | None:
    """A finished run's per-detection matches (``eval/matches.npz``); None when it has none."""
    return load_matches(run.paths.matches) if run.paths.matches.is_file() else None
