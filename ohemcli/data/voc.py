"""Reader for any Pascal VOC-format root.

A root holds ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and ``ImageSets/Main/<split>.txt``.
VOC XML coordinates are 1-based and inclusive. Inside ohemcli every box is a 0-based float
``(x1, y1, x2, y2)``: we subtract 1 on read here (and add 1 back when writing results files, see
``evaluation.results_files``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException

from ohemcli.data.checks import (
    check_image_size,
    check_name,
    child_path,
    clip_box,
    image_header_size,
)
from ohemcli.errors import UserError, quote
from ohemcli.fileio import read_text

log = logging.getLogger("ohemcli")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_BOX_SIDE = 2.0  # boxes narrower or shorter than this (in pixels) are degenerate and dropped
_size_warned: set[Path] = set()  # annotation files whose <size> disagreement was already said


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image. Labels run 1..K (0 is reserved for background)."""

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # (G, 4) float32, 0-based x1 y1 x2 y2
    labels: np.ndarray  # (G,) int64 in 1..K
    difficult: np.ndarray  # (G,) bool


@dataclass(frozen=True)
class _RawObject:
    name: str
    box: tuple[float, float, float, float]  # 0-based
    difficult: bool


def _split_line_id(line: str) -> str:
    """The image id of one line of a split file.

    A line is an id, or in VOC's per-class lists (``<class>_<split>.txt``) an id and a label of
    -1, 0 or 1. Anything else means an id with whitespace in it, which would otherwise be cut
    to its first word and reported as a missing file: refused by name.
    """
    fields = line.split()
    if len(fields) == 1 or (len(fields) == 2 and fields[1] in ("-1", "0", "1")):
        return fields[0]
    raise UserError(f"image id {quote(line.strip())} holds whitespace; refused")


def read_split_ids(root: Path, split: str) -> list[str]:
    """The image ids listed in ``ImageSets/Main/<split>.txt`` (first column), in file order.

    The file must be UTF-8 (a leading BOM is dropped). Every id is checked to be a safe file-name
    part. An id listed twice is kept once, with a warning: counting it twice would count its
    ground truth twice in the AP.
    """
    if not root.is_dir():
        raise UserError(f"{root}: data root does not exist or is not a folder")
    check_name(split, "split name", "--split")
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise UserError(f"{path}: split file not found (is '{split}' a split of this data set?)")
    ids: dict[str, int] = {}  # id -> first line; a dict keeps file order
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = _split_line_id(line)
        except UserError as exc:
            raise UserError(f"{path}:{number}: {exc}") from None
        image_id = check_name(raw, "image id", f"{path}:{number}")
        if image_id in ids:
            log.warning(
                "%s:%d: image id %s already listed on line %d; kept once",
                path, number, quote(image_id), ids[image_id],
            )  # fmt: skip
            continue
        ids[image_id] = number
    if not ids:
        raise UserError(f"{path}: split file lists no images")
    return list(ids)


def _text(node: Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise UserError(f"{path}: missing <{tag}>")
    return child.text.strip()


def _number(node: Element, tag: str, path: Path) -> float:
    raw = _text(node, tag, path)
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"{path}: <{tag}> is not a number: {raw!r}") from None


def parse_annotation(path: Path) -> tuple[int, int, list[_RawObject]]:
    """Parse one VOC XML file into (width, height, objects) with 0-based boxes.

    The size must be finite, at least 1 and within the image limits, and class names safe file-name
    parts; otherwise a UserError names the file. Box coordinates are returned as read (``nan``
    included): :func:`ohemcli.data.checks.clip_box` decides which boxes are usable.
    """
    if not path.is_file():
        raise UserError(f"{path}: annotation file not found")
    try:
        root = SafeET.parse(path).getroot()
    except DefusedXmlException as exc:
        raise UserError(f"{path}: refused unsafe XML ({type(exc).__name__})") from None
    except SafeET.ParseError as exc:
        raise UserError(f"{path}: malformed XML ({exc})") from None
    except OSError:
        raise  # unreadable, not malformed: the CLI names the file and the reason
    except Exception as exc:  # noqa: BLE001 - any other parser failure is the file's, in one line
        raise UserError(f"{path}: malformed XML ({type(exc).__name__}: {exc})") from None
    size = root.find("size")
    if size is None:
        raise UserError(f"{path}: missing <size>")
    width, height = check_image_size(
        _number(size, "width", path), _number(size, "height", path), path
    )
    objects = []
    for obj in root.findall("object"):
        name = check_name(_text(obj, "name", path), "class name", path)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise UserError(f"{path}: object {quote(name)} has no <bndbox>")
        # VOC is 1-based and inclusive; subtract 1 to get 0-based coordinates.
        x1, y1, x2, y2 = (_number(bnd, t, path) - 1.0 for t in ("xmin", "ymin", "xmax", "ymax"))
        if x2 < x1 or y2 < y1:  # False for nan: those are dropped later, with a warning
            raise UserError(f"{path}: object {quote(name)} has inverted coordinates")
        diff_node = obj.find("difficult")
        difficult = diff_node is not None and (diff_node.text or "0").strip() == "1"
        objects.append(_RawObject(name, (x1, y1, x2, y2), difficult))
    return width, height, objects


def _find_image(root: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = child_path(root, "JPEGImages", f"{image_id}{suffix}")
        if path.is_file():
            return path
    raise UserError(f"{root / 'JPEGImages' / image_id}.jpg: image not found for id '{image_id}'")


def discover_classes(root: Path) -> tuple[str, ...]:
    """The 20 VOC names when the data uses only those, else the sorted names found in trainval."""
    split = "trainval"
    if not (root / "ImageSets" / "Main" / "trainval.txt").is_file():
        split = "train" if (root / "ImageSets" / "Main" / "train.txt").is_file() else "test"
    names: set[str] = set()
    for image_id in read_split_ids(root, split):
        _, _, objects = parse_annotation(child_path(root, "Annotations", f"{image_id}.xml"))
        names.update(o.name for o in objects)
    if not names:
        raise UserError(f"{root}: no annotated objects in split '{split}', cannot infer classes")
    if names <= set(VOC_CLASSES):
        return VOC_CLASSES
    return tuple(sorted(names))


class VOCDataset:
    """All images of one split of a VOC root (or its first ``limit``), parsed eagerly so that errors
    surface at once.

    Attributes: ``root``, ``split``, ``classes`` (names of labels 1..K), ``records``,
    ``num_objects`` (every annotated object, degenerate ones included), ``dropped`` (one message per
    degenerate box that was left out).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str] | None = None,
        limit: int = 0,
        limit_option: str = "limit",
    ) -> None:
        self.root = Path(root)
        self.split = split
        ids = read_split_ids(self.root, split)
        if limit:  # the first ``limit`` ids, in file order (the option's name goes in the error)
            if limit > len(ids):
                raise UserError(
                    f"{limit_option}: {limit}, but split '{split}' of {self.root} has "
                    f"{len(ids)} images"
                )
            ids = ids[:limit]
        self.classes: tuple[str, ...] = tuple(classes) if classes else discover_classes(self.root)
        for name in self.classes:  # a class name becomes part of a results file's name
            check_name(name, "class name", "classes")
        index = {name: i + 1 for i, name in enumerate(self.classes)}
        self.records: list[ImageRecord] = []
        self.dropped: list[str] = []
        self.num_objects = 0
        self.unknown_objects = 0
        for image_id in ids:
            xml_path = child_path(self.root, "Annotations", f"{image_id}.xml")
            width, height, objects = parse_annotation(xml_path)
            image_path = _find_image(self.root, image_id)
            # The image is the truth: the XML's <size> may be stale or wrong, and boxes are
            # clipped and images scaled by what the file decodes to.
            width, height = self._true_size(image_path, xml_path, width, height)
            self.num_objects += len(objects)
            keep = []
            for o in objects:
                box, why = clip_box(o.box, width, height)
                if box is None:
                    self.dropped.append(f"{xml_path}: dropped {quote(o.name)} box ({why})")
                elif box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
                    self.dropped.append(f"{xml_path}: dropped degenerate '{o.name}' box {o.box}")
                elif o.name not in index:
                    self.unknown_objects += 1
                else:
                    keep.append(replace(o, box=box))
            self.records.append(
                ImageRecord(
                    image_id=image_id,
                    image_path=image_path,
                    width=width,
                    height=height,
                    boxes=np.array([o.box for o in keep], dtype=np.float32).reshape(-1, 4),
                    labels=np.array([index[o.name] for o in keep], dtype=np.int64),
                    difficult=np.array([o.difficult for o in keep], dtype=bool),
                )
            )
        for message in self.dropped:
            log.warning(message)

    @staticmethod
    def _true_size(image: Path, xml: Path, width: int, height: int) -> tuple[int, int]:
        """The image's size from its header (checked against the limits, no pixel decoded);
        a warning names the XML whose <size> says otherwise."""
        true_w, true_h = image_header_size(image)  # refuses an oversized image before decoding
        if (true_w, true_h) != (width, height) and xml not in _size_warned:
            _size_warned.add(xml)  # once per file: each split is read more than once
            log.warning(
                "%s: <size> says %d x %d but %s is %d x %d; using the image's size",
                xml, width, height, image.name, true_w, true_h,
            )  # fmt: skip
        return true_w, true_h

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> ImageRecord:
        return self.records[i]

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        return len(self.classes)

    @property
    def listing(self) -> Path:
        """The file that lists this split's images (``ImageSets/Main/<split>.txt``)."""
        return self.root / "ImageSets" / "Main" / f"{self.split}.txt"

    def fingerprint(self) -> str:
        """A content hash of the split: ids, annotation bytes, and each image file's size and
        modification time (a replaced image changes them without a full read of every pixel).

        Caches keyed by it (proposals) are never served for a changed data set.
        """
        h = hashlib.sha1(self.split.encode())
        for r in self.records:
            h.update(r.image_id.encode())
            h.update((self.root / "Annotations" / f"{r.image_id}.xml").read_bytes())
            stat = r.image_path.stat()
            h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        return h.hexdigest()[:16]


def load_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as an RGB uint8 array (H, W, 3); oversized ones are refused from the header.

    Pixels as stored, EXIF orientation ignored: the header size that :class:`VOCDataset` records
    (PIL's) is the stored one, and boxes are scaled by it. ``size`` (width, height), when given,
    is that recorded size: an image that decodes to another (replaced since) is refused.
    """
    import cv2

    image_header_size(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise UserError(f"{path}: cannot read image")
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        raise UserError(
            f"{path}: decodes to {image.shape[1]} x {image.shape[0]}, but was {size[0]} x "
            f"{size[1]} when the data set was read; was it replaced?"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
