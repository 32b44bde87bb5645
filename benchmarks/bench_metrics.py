"""How fast is the vectorised VOC evaluator on a VOC07-sized test set, against a plain loop?

    python benchmarks/bench_metrics.py [--loop-classes N] [--seed S]

Builds, in memory and with a fixed seed, 4,952 images with about 2.5 objects each (10% difficult)
over 20 classes, and 100 detections per image (jittered copies of the ground truth with higher
scores, and background boxes), then times ``evaluate_voc`` and a plain per-detection loop (a
straight port of py-faster-rcnn's ``voc_eval``), checks that both give the same AP for every class
they both scored, and prints the times and the speed-up. With ``--loop-classes N`` the loop scores
only the first N classes and its time is extrapolated to 20 in proportion to their detections.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reference_voc

from ohemcli.data.voc import VOC_CLASSES, ImageRecord
from ohemcli.evaluation.results_files import (
    ClassDetections,
    Detections,
    read_results_files,
    write_results_files,
)
from ohemcli.evaluation.voc_ap import evaluate_voc
from tests.reference_voc import reference_class  # noqa: E402

NUM_IMAGES, DETS_PER_IMAGE, OBJECTS_PER_IMAGE = 4952, 100, 2.5


def _random_boxes(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    x1, y1 = rng.uniform(0, w - 20, n), rng.uniform(0, h - 20, n)
    bw, bh = rng.uniform(16, w / 2, n), rng.uniform(16, h / 2, n)
    return np.stack([x1, y1, np.minimum(x1 + bw, w - 1), np.minimum(y1 + bh, h - 1)], axis=1)


def make_set(seed: int) -> tuple[list[ImageRecord], Detections]:
    """A synthetic VOC07-sized test set and detections on it."""
    rng = np.random.default_rng(seed)
    records, rows = [], {name: ([], [], []) for name in VOC_CLASSES}
    for i in range(NUM_IMAGES):
        w, h = 500, 375
        n = max(1, rng.poisson(OBJECTS_PER_IMAGE))
        boxes = _random_boxes(rng, n, w, h)
        labels = rng.integers(1, len(VOC_CLASSES) + 1, n)
        image_id = f"{i:06d}"
        records.append(
            ImageRecord(image_id, Path(f"{image_id}.jpg"), w, h, boxes.astype(np.float32),
                        labels, rng.random(n) < 0.1)
        )  # fmt: skip
        # About 3 jittered detections per object, the rest background, random classes.
        hits = rng.integers(0, n, min(3 * n, DETS_PER_IMAGE))
        det_boxes = np.concatenate(
            [boxes[hits] + rng.normal(0, 12, (len(hits), 4)),
             _random_boxes(rng, DETS_PER_IMAGE - len(hits), w, h)]
        )  # fmt: skip
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2])
        det_labels = np.concatenate([labels[hits], rng.integers(1, 21, DETS_PER_IMAGE - len(hits))])
        scores = np.concatenate(
            [rng.uniform(0.3, 1, len(hits)), rng.uniform(0, 0.7, 100 - len(hits))]
        )
        scores = np.round(scores, 3)  # 3 decimals, as many detectors write: plenty of ties
        for box, label, score in zip(det_boxes, det_labels, scores, strict=True):
            ids, ss, bs = rows[VOC_CLASSES[label - 1]]
            ids.append(image_id)
            ss.append(score)
            bs.append(box)
    dets = {name: ClassDetections(ids, ss, bs) for name, (ids, ss, bs) in rows.items()}
    return records, dets


def loop_ap(cd: ClassDetections, records: list[ImageRecord], label: int) -> float:
    """py-faster-rcnn's voc_eval for one class, one detection at a time (voc07)."""
    truth = {}
    for r in records:
        mine = r.labels == label
        truth[r.image_id] = (r.boxes[mine].astype(np.float64), r.difficult[mine])
    return reference_class(cd, truth, "voc07")[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop-classes", type=int, default=len(VOC_CLASSES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    records, dets = make_set(args.seed)
    build = time.perf_counter() - t0
    total = sum(len(cd) for cd in dets.values())
    num_gt = sum(len(r.labels) for r in records)
    print(f"{NUM_IMAGES} images, {num_gt} objects, {total} detections (built in {build:.1f} s)")

    fast_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fast = evaluate_voc(dets, records, VOC_CLASSES, "voc07")
        fast_times.append(time.perf_counter() - t0)
    fast_s = min(fast_times)

    looped = VOC_CLASSES[: args.loop_classes]
    t0 = time.perf_counter()
    slow = {name: loop_ap(dets[name], records, k + 1) for k, name in enumerate(looped)}
    loop_s = time.perf_counter() - t0
    share = sum(len(dets[n]) for n in looped) / total
    loop_all = loop_s / share  # extrapolated to every class when only some were looped

    worst = max(abs(slow[n] - fast.ap[n]) for n in looped)
    assert worst < 1e-12, f"vectorised and loop disagree by {worst}"
    slow_map = np.mean(list(slow.values()))
    fast_map = np.mean([fast.ap[n] for n in looped])

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_results_files(dets, Path(tmp), "test")
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read_results_files(Path(tmp), "test", VOC_CLASSES, {r.image_id for r in records})
        read_s = time.perf_counter() - t0

    note = "" if len(looped) == len(VOC_CLASSES) else f" ({len(looped)} classes, extrapolated)"
    print(f"\n{'step':<52}{'seconds':>10}")
    print(f"{'evaluate_voc (vectorised, best/3)':<52}{fast_s:>10.3f}")
    print(f"{'plain per-detection loop' + note:<52}{loop_all:>10.3f}")
    print(f"{'speed-up':<52}{loop_all / fast_s:>9.1f}x")
    print(f"{'write results files':<52}{write_s:>10.3f}")
    print(f"{'read results files':<52}{read_s:>10.3f}")
    print(f"\nmAP over the looped classes: vectorised {fast_map:.6f}, loop {slow_map:.6f}")
    print(f"largest per-class AP difference {worst:.1e}; vectorised mAP over 20: {fast.mAP:.6f}")


if __name__ == "__main__":
    main()
