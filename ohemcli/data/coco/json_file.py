"""Checks on a COCO json file: its keys, ids, names, boxes and what the images on disk say.

Everything in the file is untrusted. Each problem that makes the file unusable is one UserError
naming the file (and the entry, ``annotations[12]``); boxes that are merely unusable (under 1 px,
outside the image, a non-finite coordinate) are dropped by :mod:`ohemcli.data.coco.dataset`, with
one warning line per file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ohemcli.data.checks import check_image_size, check_name, child_path, image_header_size
from ohemcli.errors import UserError, quote
from ohemcli.fileio import read_json

# EXIF orientations 5-8 turn the image a quarter: decoders that honour EXIF (OpenCV's imread, which
# loads every image here) swap its width and height.
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)


@dataclass(frozen=True)
class COCOImage:
    """One ``images`` entry, checked."""

    id: int
    file_name: str
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class COCOAnnotation:
    """One ``annotations`` entry, checked (the box as read: ``x, y, w, h``, maybe non-finite)."""

    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    iscrowd: bool
    difficult: bool  # not COCO's: what ``ohem data convert --to coco`` keeps of a VOC root


@dataclass(frozen=True)
class COCOFile:
    """A checked COCO json: categories ordered by id, images and annotations in file order."""

    path: Path
    categories: list[tuple[int, str]]  # (id, name), ordered by id
    images: list[COCOImage]
    annotations: list[COCOAnnotation]


def _int(value: Any, where: str) -> int:
    # bool is an int to Python but never an id; "5" is a string id, refused as such
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where} is {quote(value)}, not an integer")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where} is {quote(value)}, not a number")
    return float(value)


def _entries(doc: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    if key not in doc:
        raise UserError(f"{path}: missing key {quote(key)}; not a COCO instances file")
    entries = doc[key]
    if not isinstance(entries, list):
        raise UserError(f"{path}: {quote(key)} is not a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UserError(f"{path}: {key}[{i}] is not an object")
    return entries


def _field(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise UserError(f"{where}: missing key {quote(key)}")
    return entry[key]


def _categories(doc: dict[str, Any], path: Path) -> list[tuple[int, str]]:
    cats: dict[int, str] = {}
    names: set[str] = set()
    for i, c in enumerate(_entries(doc, "categories", path)):
        where = f"{path}: categories[{i}]"
        cid = _int(_field(c, "id", where), f"{where}.id")
        name = _field(c, "name", where)
        if not isinstance(name, str):
            raise UserError(f"{where}.name is {quote(name)}, not a string")
        check_name(name, "category name", where)  # it becomes part of a results file's name
        if cid in cats or name in names:
            raise UserError(f"{where}: category id {cid} or name {quote(name)} listed twice")
        cats[cid] = name
        names.add(name)
    if not cats:
        raise UserError(f"{path}: 'categories' is empty")
    return sorted(cats.items())


def _image_path(image_dir: Path, file_name: Any, where: str) -> Path:
    if not isinstance(file_name, str):
        raise UserError(f"{where}.file_name is {quote(file_name)}, not a string")
    parts = file_name.replace("\\", "/").split("/")
    for part in parts:  # sub-folders are fine; '..', an absolute path or a control character not
        check_name(part, "file_name part", f"{where}.file_name {quote(file_name)}")
    return child_path(image_dir, *parts)


def _images(doc: dict[str, Any], path: Path, image_dir: Path) -> list[COCOImage]:
    images: list[COCOImage] = []
    first: dict[int, int] = {}
    files: dict[str, int] = {}
    for i, entry in enumerate(_entries(doc, "images", path)):
        where = f"{path}: images[{i}]"
        iid = _int(_field(entry, "id", where), f"{where}.id")
        if iid in first:
            raise UserError(f"{where}: image id {iid} listed twice (first at images[{first[iid]}])")
        image_path = _image_path(image_dir, _field(entry, "file_name", where), where)
        if str(image_path) in files:
            raise UserError(
                f"{where}: file_name {quote(entry['file_name'])} listed twice (first at "
                f"images[{files[str(image_path)]}])"
            )
        w = _number(_field(entry, "width", where), f"{where}.width")
        h = _number(_field(entry, "height", where), f"{where}.height")
        width, height = check_image_size(w, h, where)
        first[iid], files[str(image_path)] = i, i
        images.append(COCOImage(iid, entry["file_name"], image_path, width, height))
    if not images:
        raise UserError(f"{path}: 'images' is empty")
    return images


def _annotations(
    doc: dict[str, Any], path: Path, image_ids: set[int], category_ids: set[int]
) -> list[COCOAnnotation]:
    entries = _entries(doc, "annotations", path)
    if not entries:
        raise UserError(f"{path}: 'annotations' is empty; nothing to train or evaluate on")
    out = []
    for i, a in enumerate(entries):
        where = f"{path}: annotations[{i}]"
        iid = _int(_field(a, "image_id", where), f"{where}.image_id")
        if iid not in image_ids:
            raise UserError(f"{where}: image_id {iid} is not in 'images'")
        cid = _int(_field(a, "category_id", where), f"{where}.category_id")
        if cid not in category_ids:
            raise UserError(f"{where}: category_id {cid} is not in 'categories'")
        bbox = _field(a, "bbox", where)
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise UserError(f"{where}.bbox is {quote(bbox)}, not a list of 4 numbers")
        box = tuple(_number(v, f"{where}.bbox") for v in bbox)
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            raise UserError(f"{where}.iscrowd is {quote(crowd)}, not 0 or 1")
        difficult = bool(a.get("difficult", 0) == 1)
        # box: 4 numbers (checked above), a tuple of unknown length to the type checker
        out.append(COCOAnnotation(iid, cid, box, bool(crowd), difficult))  # type: ignore[arg-type]
    return out


def read_coco_file(path: Path, image_dir: Path) -> COCOFile:
    """Read and check a COCO instances json; ``file_name`` entries are under ``image_dir``.

    Refused, each in one line naming the file and entry: missing keys, ids that are not integers,
    an image id or file name listed twice, a ``file_name`` leaving ``image_dir``, an image size
    out of range, an annotation pointing to a missing image or category, a bbox that is not 4
    numbers, an empty ``images``, ``categories`` or ``annotations`` list.
    """
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a COCO instances file (the top level is not an object)")
    categories = _categories(doc, path)
    images = _images(doc, path, image_dir)
    annotations = _annotations(doc, path, {im.id for im in images}, {c for c, _ in categories})
    return COCOFile(path, categories, images, annotations)


def decoded_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as a decoder that honours EXIF rotation gives it.

    From the header only (PIL is lazy); refused over the pixel limits, like any image here.
    """
    from PIL import Image

    width, height = image_header_size(path)
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION)
    except (OSError, ValueError, SyntaxError):  # a broken EXIF block: no rotation either
        orientation = None
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def check_image_on_disk(image: COCOImage, json_path: Path) -> None:
    """The image exists and its decoded size (EXIF rotation applied) is the json's, else one
    line naming the image."""
    if not image.path.is_file():
        raise UserError(f"{image.path}: image not found (listed in {json_path})")
    width, height = decoded_size(image.path)
    if (width, height) != (image.width, image.height):
        raise UserError(
            f"{image.path}: {width} x {height} as decoded (EXIF rotation applied), but "
            f"{json_path} says {image.width} x {image.height}; fix the json's width and height"
        )


def bbox_is_finite(bbox: tuple[float, float, float, float]) -> bool:
    """Whether every coordinate of a COCO box is finite (json allows NaN and Infinity)."""
    return all(math.isfinite(v) for v in bbox)
