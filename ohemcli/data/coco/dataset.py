"""Reader for a split of a COCO-format data set, with the interface of :class:`VOCDataset`.

Categories become labels 1..K (0 is background) in the order of their ids, or in the order of
``classes`` (``--classes``, by name), which may also pick a subset; the dataset keeps the original
ids (``category_ids``, ``coco_image_ids``) so that results are written with them.

Coordinates: a COCO box is ``[x, y, w, h]`` in continuous pixels. Inside ohemcli it becomes
``(x, y, x + w, y + h)``, the inverse of what ``evaluation.coco`` writes (``w = x2 - x1``, no +1),
so a box read here and written there comes back bit for bit.

``iscrowd`` boxes are ignore regions (as in detectron2, mmdetection and COCOeval): they are kept
in ``crowd`` and also flagged ``difficult``, so that evaluation treats them exactly as the VOC
devkit treats difficult boxes (a detection on one is neither TP nor FP; they are no positives),
and training never uses them as targets (``data.batching`` also leaves out the proposals that lie
inside one).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ohemcli.data.checks import clip_box
from ohemcli.data.coco.json_file import (
    COCOAnnotation,
    COCOFile,
    bbox_is_finite,
    check_image_on_disk,
    read_coco_file,
)
from ohemcli.data.coco.layout import COCOLayout
from ohemcli.data.dataset import Dataset
from ohemcli.data.voc import ImageRecord
from ohemcli.errors import UserError, quote

log = logging.getLogger("ohemcli")

MIN_COCO_BOX = 1.0  # a COCO box under 1 px wide or high is dropped (pixels)


@dataclass(frozen=True)
class COCORecord(ImageRecord):
    """An :class:`ImageRecord` whose ``crowd`` boxes (a subset of the ``difficult`` ones) are
    ignore regions."""

    crowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (G,) bool


def crowd_mask(record: ImageRecord) -> np.ndarray:
    """(G,) bool: which ground-truth boxes of ``record`` are crowd regions (none for VOC)."""
    if isinstance(record, COCORecord):
        return record.crowd
    return np.zeros(len(record.labels), bool)


def _label_index(
    file: COCOFile, classes: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(class names of labels 1..K, their category ids)."""
    by_name = {name: cid for cid, name in file.categories}
    if not classes:
        return tuple(n for _, n in file.categories), tuple(c for c, _ in file.categories)
    for name in classes:
        if name not in by_name:
            raise UserError(
                f"classes: {quote(name)} is not a category of {file.path} (it has "
                f"{', '.join(n for _, n in file.categories)})"
            )
    return tuple(classes), tuple(by_name[n] for n in classes)


def _usable_box(a: COCOAnnotation, width: int, height: int) -> tuple[float, ...] | None:
    if not bbox_is_finite(a.bbox):
        return None
    x, y, w, h = a.bbox
    if w < MIN_COCO_BOX or h < MIN_COCO_BOX:
        return None
    box, _ = clip_box((x, y, x + w, y + h), width, height)  # None when outside the image
    return box


class COCODataset:
    """All images of one split of a COCO set (or its first ``limit``), checked eagerly.

    Attributes as :class:`VOCDataset` (``root`` is the split's image folder), and ``json_path``,
    ``category_ids`` (category id of labels 1..K), ``coco_image_ids`` (record image_id -> the
    json's id), ``skipped_empty`` (training images left out for having no usable box),
    ``num_crowd``.
    """

    def __init__(
        self,
        layout: COCOLayout,
        split: str,
        classes: Sequence[str] | None = None,
        limit: int = 0,
        limit_option: str = "limit",
        skip_empty: bool = False,
    ) -> None:
        chosen = layout.split(split)
        self.root, self.split, self.json_path = chosen.image_dir, chosen.name, chosen.json_path
        file = read_coco_file(chosen.json_path, chosen.image_dir)
        self.classes, self.category_ids = _label_index(file, classes)
        label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        per_image: dict[int, list[COCOAnnotation]] = {im.id: [] for im in file.images}
        for a in file.annotations:
            per_image[a.image_id].append(a)
        self.num_objects = len(file.annotations)
        self.unknown_objects = sum(a.category_id not in label_of for a in file.annotations)
        self.dropped: list[str] = []
        self.records: list[COCORecord] = []
        self.coco_image_ids: dict[str, int] = {}
        skipped = 0
        for image in file.images:
            kept = []
            for a in per_image[image.id]:
                box = _usable_box(a, image.width, image.height)
                if box is None:
                    self.dropped.append(f"{file.path}: image {image.id}: box {list(a.bbox)}")
                elif a.category_id in label_of:
                    kept.append((box, label_of[a.category_id], a.iscrowd, a.difficult))
            if skip_empty and not any(not crowd for _, _, crowd, _ in kept):
                skipped += 1
                continue
            self.records.append(_record(image.id, image.path, image.width, image.height, kept))
            self.coco_image_ids[str(image.id)] = image.id
        self.skipped_empty = skipped
        self._report(file.path, skipped)
        if limit:
            if limit > len(self.records):
                raise UserError(
                    f"{limit_option}: {limit}, but split '{self.split}' of {layout.source} has "
                    f"{len(self.records)} usable images"
                )
            self.records = self.records[:limit]
        if not self.records:
            raise UserError(f"{file.path}: no image with a usable box in split '{self.split}'")
        by_id = {im.id: im for im in file.images}
        for r in self.records:  # the image files, from their headers, before any work
            check_image_on_disk(by_id[self.coco_image_ids[r.image_id]], file.path)
        self.num_crowd = sum(int(r.crowd.sum()) for r in self.records)

    def _report(self, path: Path, skipped: int) -> None:
        if self.dropped:
            log.warning(
                "%s: dropped %d boxes (under %g px, outside the image or non-finite)",
                path, len(self.dropped), MIN_COCO_BOX,
            )  # fmt: skip
        if skipped:
            log.warning(
                "%s: skipped %d training images with no usable box (--keep-empty keeps them)",
                path, skipped,
            )  # fmt: skip

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> COCORecord:
        return self.records[i]

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        return len(self.classes)

    @property
    def listing(self) -> Path:
        """The file that lists this split's images (its COCO json)."""
        return self.json_path

    def fingerprint(self) -> str:
        """A content hash of the split: the json's bytes, the split, and per image its id, file
        name and file size.

        It starts from a tag that no VOC fingerprint hashes, so a proposals cache of a COCO set
        never serves a VOC root with the same image ids (or the other way round).
        """
        h = hashlib.sha1(b"coco-json\0" + self.split.encode() + b"\0")
        h.update(hashlib.sha1(self.json_path.read_bytes()).digest())
        for r in self.records:
            h.update(f"{r.image_id}\0{r.image_path.relative_to(self.root)}\0".encode())
            h.update(str(r.image_path.stat().st_size).encode())
        return h.hexdigest()[:16]


def _record(image_id: int, path: Path, width: int, height: int, kept: list[tuple]) -> COCORecord:
    boxes = np.array([k[0] for k in kept], dtype=np.float32).reshape(-1, 4)
    crowd = np.array([k[2] for k in kept], dtype=bool)
    return COCORecord(
        image_id=str(image_id),
        image_path=path,
        width=width,
        height=height,
        boxes=boxes,
        labels=np.array([k[1] for k in kept], dtype=np.int64),
        difficult=crowd | np.array([k[3] for k in kept], dtype=bool),
        crowd=crowd,
    )


def coco_ids(dataset: Dataset) -> tuple[dict[str, int], tuple[int, ...]]:
    """(record image_id -> COCO image id, COCO category id of labels 1..K) of any dataset.

    A COCO set keeps its own ids. A VOC root has none: its images are numbered 1.. in split order
    and its categories 1..K in label order, exactly as ``ohem data convert --to coco`` numbers
    them.
    """
    if isinstance(dataset, COCODataset):
        return dataset.coco_image_ids, dataset.category_ids
    records, classes = dataset.records, dataset.classes
    return {r.image_id: i + 1 for i, r in enumerate(records)}, tuple(range(1, len(classes) + 1))
