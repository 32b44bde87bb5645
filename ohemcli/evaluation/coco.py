"""COCO box AP through pycocotools, built from in-memory objects (no temporary JSON files)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ohemcli.data.coco.dataset import COCODataset
from ohemcli.data.voc import ImageRecord
from ohemcli.evaluation.results_files import ClassDetections, Detections

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    """0-based x1y1x2y2 to COCO's xywh. COCO boxes are continuous: no +1 here."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()


def _coco_dataset(records: Sequence[ImageRecord], classes: Sequence[str]) -> dict[str, Any]:
    """Ground truth as an in-memory COCO dataset. Difficult boxes become ``iscrowd=1``."""
    anns: list[dict[str, Any]] = []  # ids start at 1: COCOeval takes id 0 to mean "unmatched"
    for i, r in enumerate(records):
        for box, label, crowd in zip(
            _xywh(r.boxes), r.labels.tolist(), r.difficult.tolist(), strict=True
        ):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": label,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": int(crowd)})  # fmt: skip
    images = [{"id": i + 1, "width": r.width, "height": r.height} for i, r in enumerate(records)]
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    return {"images": images, "categories": categories, "annotations": anns}


def _coco_detections(
    dets: Detections, records: Sequence[ImageRecord], classes: Sequence[str]
) -> list[dict[str, Any]]:
    index = {r.image_id: i + 1 for i, r in enumerate(records)}
    out: list[dict[str, Any]] = []
    for k, name in enumerate(classes):
        cd = dets.get(name) or ClassDetections()
        for image_id, score, box in zip(
            cd.image_ids, cd.scores.tolist(), _xywh(cd.boxes), strict=True
        ):
            out.append({"id": len(out) + 1, "image_id": index[image_id], "category_id": k + 1,
                        "bbox": box, "score": score, "area": box[2] * box[3]})  # fmt: skip
    return out


def evaluate_coco(
    dets: Detections, records: Sequence[ImageRecord], classes: Sequence[str]
) -> dict[str, Any]:
    """COCO box AP through pycocotools: ``AP`` (@[.5:.95]), ``AP50``, ``AP75``, ``APs/m/l`` and
    ``per_class`` (AP@[.5:.95] per class name). NaN where COCO has nothing to measure (its -1).

    Boxes go in as xywh with no +1 (``w = x2 - x1``). A difficult box becomes ``iscrowd=1``: COCO
    then neither counts it as a positive nor charges a detection on it as a false positive, the
    nearest COCO has to VOC's "difficult" (it measures overlap with a crowd box as intersection
    over the detection's area, and prefers a regular box when both match).
    """
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = _coco_dataset(records, classes)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints on stdout
        gt.createIndex()
    dt_anns = _coco_detections(dets, records, classes)
    return _cocoeval(gt, dt_anns, list(range(1, len(records) + 1)), range(1, len(classes) + 1),
                     classes)  # fmt: skip


def evaluate_coco_json(dets: Detections, dataset: COCODataset) -> dict[str, Any]:
    """COCO box AP of a COCO set's split against its original json, as :func:`evaluate_coco`
    returns it.

    No conversion: pycocotools reads the json itself, with its areas, crowd regions and the boxes
    that our reader drops as unusable (they stay ground truth here, as for any COCO tool). The
    evaluation covers the split's images (all of them: test splits skip none) and the categories
    of ``dataset.classes``.
    """
    from pycocotools.coco import COCO

    from ohemcli.evaluation.coco_results import coco_results

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints on stdout
        gt = COCO(str(dataset.json_path))
    dt_anns = [{**d, "id": i + 1, "area": d["bbox"][2] * d["bbox"][3]}
               for i, d in enumerate(coco_results(dets, dataset))]  # fmt: skip
    image_ids = [dataset.coco_image_ids[r.image_id] for r in dataset.records]
    return _cocoeval(gt, dt_anns, image_ids, dataset.category_ids, dataset.classes)


def _cocoeval(
    gt: Any,
    dt_anns: list[dict[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Run COCOeval on detections ``dt_anns`` over the given images and categories."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # pycocotools prints progress on stdout; keep stdout clean for --json.
    with contextlib.redirect_stdout(io.StringIO()):
        dt = COCO()
        dt.dataset = {**gt.dataset, "annotations": dt_anns}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = list(image_ids)
        ev.params.catIds = sorted(category_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = dict(
        zip(COCO_KEYS, [float(v) if v >= 0 else np.nan for v in ev.stats[:6]], strict=True)
    )
    precision = ev.eval["precision"]  # (iou thresholds, recall points, classes, areas, max dets)
    column = {cid: k for k, cid in enumerate(sorted(category_ids))}  # COCOeval sorts catIds
    per_class = {}
    for cid, name in zip(category_ids, classes, strict=True):
        p = precision[:, :, column[cid], 0, -1]  # area "all", 100 detections per image
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
    return {**stats, "per_class": per_class}
