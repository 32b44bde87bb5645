"""Small COCO-format sets built inside tests: tiny images and hand-written json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SIZE = (48, 40)  # width, height of every test image


def write_image(path: Path, shade: int = 60, size: tuple[int, int] = SIZE) -> Path:
    """A JPEG of ``size`` (width, height) with a bright square at pixels 8..23."""
    width, height = size
    image = np.full((height, width, 3), shade, np.uint8)
    image[8:24, 8:24] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def coco_doc(
    num_images: int = 2,
    categories: list[tuple[int, str]] | None = None,
    boxes: dict[int, list[tuple[int, list[float]]]] | None = None,
) -> dict[str, Any]:
    """A COCO instances document: images ``1..num_images`` (``img<i>.jpg``), the given categories
    (default one, id 5 ``thing``) and boxes (image id -> [(category id, [x, y, w, h])]; default one
    box at [8, 8, 16, 16] of the first category on every image)."""
    categories = categories or [(5, "thing")]
    if boxes is None:
        boxes = {i: [(categories[0][0], [8.0, 8.0, 16.0, 16.0])] for i in range(1, num_images + 1)}
    images = [
        {"id": i, "file_name": f"img{i}.jpg", "width": SIZE[0], "height": SIZE[1]}
        for i in range(1, num_images + 1)
    ]
    annotations = []
    for image_id, items in boxes.items():
        for cid, bbox in items:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cid, "bbox": bbox, "area": bbox[2] * bbox[3],
                                "iscrowd": 0})  # fmt: skip
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": n} for c, n in categories],
    }


def write_split(json_path: Path, image_dir: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` to ``json_path`` and one image per entry of ``doc['images']`` under
    ``image_dir``."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc))
    for k, image in enumerate(doc.get("images", [])):
        if isinstance(image.get("file_name"), str) and ".." not in image["file_name"]:
            write_image(image_dir / image["file_name"], shade=40 + 15 * k)
    return json_path


def coco_layout(root: Path, splits: dict[str, dict[str, Any]]) -> Path:
    """COCO's own layout: ``root/annotations/instances_<split>.json`` and ``root/<split>/``."""
    for split, doc in splits.items():
        write_split(root / "annotations" / f"instances_{split}.json", root / split, doc)
    return root


def roboflow_layout(root: Path, splits: dict[str, dict[str, Any]]) -> Path:
    """A Roboflow export: ``root/<split>/_annotations.coco.json`` with its images beside it."""
    for split, doc in splits.items():
        write_split(root / split / "_annotations.coco.json", root / split, doc)
    return root
