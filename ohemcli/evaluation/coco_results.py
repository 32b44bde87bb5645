"""Detections as a COCO results json: ``[{image_id, category_id, bbox, score}]``.

Every evaluation writes one (``eval/detections_coco.json``) so that other tools can read the
detections, and ``ohem eval --detections FILE.json`` reads one back. Ids are the data set's own
(a COCO set's image and category ids; for a VOC root, see
:func:`ohemcli.data.coco.dataset.coco_ids`).
Boxes are ``[x, y, w, h]`` with ``w = x2 - x1`` (no +1), as ``evaluation.coco`` gives pycocotools,
and read back as ``x2 = x + w``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ohemcli.data.coco.dataset import coco_ids
from ohemcli.data.dataset import Dataset
from ohemcli.errors import UserError, quote
from ohemcli.evaluation.results_files import ClassDetections, Detections, empty_detections
from ohemcli.fileio import atomic_write_text, read_json


def coco_results(dets: Detections, dataset: Dataset) -> list[dict[str, Any]]:
    """The detections as COCO results, class by class in label order, in detection order."""
    image_ids, category_ids = coco_ids(dataset)
    out: list[dict[str, Any]] = []
    for name, cid in zip(dataset.classes, category_ids, strict=True):
        cd = dets.get(name) or ClassDetections()
        for image_id, score, (x1, y1, x2, y2) in zip(
            cd.image_ids, cd.scores.tolist(), cd.boxes.tolist(), strict=True
        ):
            out.append({"image_id": image_ids[image_id], "category_id": cid,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})  # fmt: skip
    return out


def write_coco_results(dets: Detections, dataset: Dataset, path: Path) -> Path:
    """Write :func:`coco_results` to ``path`` atomically (floats as ``repr``: exact read-back)."""
    import json

    return atomic_write_text(path, json.dumps(coco_results(dets, dataset)) + "\n")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where} is {quote(value)}, not a finite number")
    return float(value)


def _known(value: Any, ids: dict[Any, Any]) -> bool:
    """Whether ``value`` is one of ``ids``' keys; a list or dict (unhashable: ``in`` would raise)
    and a bool (``True == 1``) never are."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool) and value in ids


def read_coco_results(path: Path, dataset: Dataset) -> Detections:
    """Read a COCO results json against ``dataset``'s ids; a bad entry is one line naming it."""
    doc = read_json(path)
    if not isinstance(doc, list):
        raise UserError(f"{path}: not a COCO results file (expected a list of detections)")
    image_ids, category_ids = coco_ids(dataset)
    image_of = {v: k for k, v in image_ids.items()}
    name_of = dict(zip(category_ids, dataset.classes, strict=True))
    rows: dict[str, list[tuple[str, float, list[float]]]] = {n: [] for n in dataset.classes}
    for i, d in enumerate(doc):
        where = f"{path}: [{i}]"
        if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(d):
            raise UserError(f"{where}: expected an object with image_id, category_id, bbox, score")
        if not _known(d["image_id"], image_of):
            raise UserError(f"{where}.image_id {quote(d['image_id'])} is not an image of the split")
        if not _known(d["category_id"], name_of):
            raise UserError(f"{where}.category_id {quote(d['category_id'])} is not a category")
        bbox = d["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise UserError(f"{where}.bbox is {quote(bbox)}, not a list of 4 numbers")
        x, y, w, h = (_number(v, f"{where}.bbox") for v in bbox)
        if w < 0 or h < 0:
            raise UserError(f"{where}.bbox has a negative width or height: {quote(bbox)}")
        score = _number(d["score"], f"{where}.score")
        box = [x, y, x + w, y + h]  # the inverse of coco_results' w = x2 - x1
        rows[name_of[d["category_id"]]].append((image_of[d["image_id"]], score, box))
    dets = empty_detections(dataset.classes)
    for name, r in rows.items():
        if r:
            boxes = np.array([b for _, _, b in r], np.float64)
            scores = np.array([s for _, s, _ in r], np.float64)
            dets[name] = ClassDetections([i for i, _, _ in r], scores, boxes)
    return dets
