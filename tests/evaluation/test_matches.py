"""Weighted AP from saved matches equals evaluating on the test images actually duplicated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ohemcli.data.voc import ImageRecord
from ohemcli.errors import UserError
from ohemcli.evaluation.matches import (
    load_matches,
    matches_from_result,
    save_matches,
    weighted_ap,
    weighted_map,
)
from ohemcli.evaluation.results_files import ClassDetections, Detections
from ohemcli.evaluation.voc_ap import evaluate_voc

CLASSES = ("cat", "dog", "bird")


def make_set(seed: int, n_images: int = 12) -> tuple[list[ImageRecord], Detections]:
    """Random images (some difficult boxes, one class absent from some images) and detections:
    jittered copies of the truth (hits, near misses, duplicates) and background boxes, with
    distinct continuous scores."""
    rng = np.random.default_rng(seed)
    records, rows = [], {c: ([], [], []) for c in CLASSES}
    for i in range(n_images):
        n = int(rng.integers(0, 4))
        xy = rng.uniform(0, 150, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 80, (n, 2))], axis=1)
        labels = rng.integers(1, len(CLASSES) + 1, n)
        image_id = f"im{i:03d}"
        records.append(
            ImageRecord(image_id, Path(f"{image_id}.jpg"), 300, 300, boxes.astype(np.float32),
                        labels, rng.random(n) < 0.2)
        )  # fmt: skip
        hits = rng.integers(0, max(n, 1), 3 * n)
        det = boxes[hits] + rng.normal(0, 8, (len(hits), 4)) if n else np.zeros((0, 4))
        bg = rng.uniform(0, 200, (4, 2))
        det = np.concatenate([det, np.concatenate([bg, bg + 30], axis=1)])
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2])
        det_labels = np.concatenate([labels[hits] if n else [], rng.integers(1, 4, 4)])
        for box, label in zip(det, det_labels.astype(int), strict=True):
            ids, scores, bs = rows[CLASSES[label - 1]]
            ids.append(image_id)
            scores.append(float(rng.random()))
            bs.append(box)
    return records, {c: ClassDetections(*rows[c]) for c in CLASSES}


def duplicated(
    records: list[ImageRecord], dets: Detections, counts: np.ndarray
) -> tuple[list[ImageRecord], Detections]:
    """The test set with image i present counts[i] times (copies get their own ids)."""
    from dataclasses import replace

    new_records, rename = [], {}
    for r, c in zip(records, counts, strict=True):
        rename[r.image_id] = [f"{r.image_id}#{k}" for k in range(c)]
        new_records += [replace(r, image_id=i) for i in rename[r.image_id]]
    new_dets = {}
    for name, cd in dets.items():
        ids, scores, boxes = [], [], []
        for i, s, b in zip(cd.image_ids, cd.scores, cd.boxes, strict=True):
            ids += rename[i]
            scores += [s] * len(rename[i])
            boxes += [b] * len(rename[i])
        new_dets[name] = ClassDetections(ids, scores, boxes)
    return new_records, new_dets


@pytest.mark.parametrize("metric", ["voc07", "voc10"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_weights_equal_duplicating_images(seed: int, metric: str) -> None:
    records, dets = make_set(seed)
    result = evaluate_voc(dets, records, CLASSES, metric)  # type: ignore[arg-type]
    m = matches_from_result(result, [r.image_id for r in records])
    rng = np.random.default_rng(100 + seed)
    weights = np.stack(
        [np.ones(len(records), int)]
        + [np.bincount(rng.integers(0, len(records), len(records)), minlength=len(records))
           for _ in range(6)]
    )  # fmt: skip
    aps = weighted_ap(m, weights, metric)  # type: ignore[arg-type]
    maps = weighted_map(m, weights, metric)  # type: ignore[arg-type]
    for b, counts in enumerate(weights):
        dup_records, dup_dets = duplicated(records, dets, counts)
        ref = evaluate_voc(dup_dets, dup_records, CLASSES, metric)  # type: ignore[arg-type]
        for k, name in enumerate(CLASSES):
            if np.isnan(ref.ap[name]):
                assert np.isnan(aps[b, k])
            elif metric == "voc07":
                assert aps[b, k] == ref.ap[name]  # exact: same cumulative sums, same thresholds
            else:
                assert aps[b, k] == pytest.approx(ref.ap[name], abs=1e-12)
        assert maps[b] == pytest.approx(ref.mAP, abs=1e-12)
    assert maps[0] == pytest.approx(result.mAP, abs=1e-12)


def test_left_out_images_and_a_class_with_no_positives() -> None:
    records, dets = make_set(5, n_images=6)
    m = matches_from_result(evaluate_voc(dets, records, CLASSES), [r.image_id for r in records])
    only_empty = np.zeros((1, len(records)), int)
    only_empty[0, 0] = 1
    if m.positives[0].sum() == 0:  # an image without positives: every AP undefined
        assert np.isnan(weighted_ap(m, only_empty)).all()
    zero = np.zeros((1, len(records)))
    assert np.isnan(weighted_map(m, zero)).all()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    records, dets = make_set(7)
    m = matches_from_result(evaluate_voc(dets, records, CLASSES), [r.image_id for r in records])
    path = save_matches(tmp_path / "eval" / "matches.npz", m)
    back = load_matches(path)
    assert back.classes == CLASSES and back.image_ids == m.image_ids
    for key in ("positives", "det_class", "det_image", "tp", "fp"):
        np.testing.assert_array_equal(getattr(back, key), getattr(m, key))
    assert not list(path.parent.glob("*.tmp"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="bad.npz"):
        load_matches(tmp_path / "bad.npz")
