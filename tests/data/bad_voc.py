"""Small VOC roots, good and bad, for the data layer's tests and the CLI's bad-input matrix.

Every builder takes a base folder and returns ``(root, culprit)``: the VOC root to read and the
path that an error message must name. ``REFUSED`` roots must give a one-line UserError naming the
culprit; ``DROPPED`` roots read, with the one object dropped and a warning naming the culprit.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

GOOD_OBJECT = (
    "<object><name>{name}</name><difficult>0</difficult>"
    "<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>40</ymax></bndbox></object>"
)
SIZE = "<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"

Builder = Callable[[Path], tuple[Path, Path]]


def annotation(
    x1: object = 1, x2: object = 30, name: str = "blob", w: object = 64, h: object = 48, y1=2
) -> str:
    """One-object VOC XML; every field can be replaced by bad text."""
    obj = GOOD_OBJECT.format(name=name, x1=x1, x2=x2, y1=y1)
    return f"<annotation>{SIZE.format(w=w, h=h)}{obj}</annotation>"


def make_root(
    base: Path,
    xml: str | None = None,
    image: bool = True,
    split: bool = True,
    split_bytes: bytes = b"a\n",
) -> tuple[Path, Path]:
    """A one-image VOC root (image id 'a', 64 x 48); returns (root, the annotation path)."""
    root = base / "root"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    path = root / "Annotations" / "a.xml"
    path.write_text(annotation() if xml is None else xml)
    if image:
        cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.zeros((48, 64, 3), np.uint8))
    if split:
        (root / "ImageSets" / "Main" / "trainval.txt").write_bytes(split_bytes)
    return root, path


def png_header(width: int, height: int) -> bytes:
    """A PNG file that declares ``width`` x ``height`` and holds no pixels (a header to refuse)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _missing_root(base: Path) -> tuple[Path, Path]:
    return base / "nope", base / "nope"


def _missing_split(base: Path) -> tuple[Path, Path]:
    root, _ = make_root(base, split=False)
    return root, root / "ImageSets" / "Main" / "trainval.txt"


def _no_image(base: Path) -> tuple[Path, Path]:
    root, _ = make_root(base, image=False)
    return root, root / "JPEGImages" / "a"


def _xml(text: str) -> Builder:
    return lambda base: make_root(base, xml=text)


def _split(data: bytes) -> Builder:
    def build(base: Path) -> tuple[Path, Path]:
        root, _ = make_root(base, split_bytes=data)
        return root, root / "ImageSets" / "Main" / "trainval.txt"

    return build


def _huge_image(width: int, height: int) -> Builder:
    """The XML says 64 x 48 but the image's header says ``width`` x ``height``."""

    def build(base: Path) -> tuple[Path, Path]:
        root, _ = make_root(base, image=False)
        image = root / "JPEGImages" / "a.png"
        image.write_bytes(png_header(width, height))
        return root, image

    return build


def _escaping_id(base: Path) -> tuple[Path, Path]:
    """An image id that climbs out of the root, with a file waiting where it points."""
    root, _ = make_root(base, split_bytes=b"../../../outside/evil\n")
    outside = root.parent.parent.parent / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "evil.xml").write_text(annotation())
    return root, root / "ImageSets" / "Main" / "trainval.txt"


REFUSED: dict[str, Builder] = {
    "missing root": _missing_root,
    "missing split file": _missing_split,
    "id without image": _no_image,
    "no size": _xml(
        f"<annotation>{GOOD_OBJECT.format(name='blob', x1=1, x2=30, y1=2)}</annotation>"
    ),
    "non-numeric coordinate": _xml(annotation(x1="abc")),
    "inverted coordinates": _xml(annotation(x1=50, x2=30)),
    "malformed xml": _xml(f"<annotation>{SIZE.format(w=64, h=48)}<object><name>blob</name>"),
    "width 0": _xml(annotation(w=0)),
    "width nan": _xml(annotation(w="nan")),
    "height inf": _xml(annotation(h="inf")),
    "negative height": _xml(annotation(h=-48)),
    "xml size over the side limit": _xml(annotation(w=10_001)),
    "xml size over the pixel limit": _xml(annotation(w=9_000, h=9_000)),
    "image header over the side limit": _huge_image(10_001, 1),
    "image header over the pixel limit": _huge_image(9_000, 9_000),
    "class name escapes": _xml(annotation(name="x/../../../../escaped/evil")),
    "class name with a control character": _xml(annotation(name="a&#10;b")),
    "image id escapes": _escaping_id,
    "split file not UTF-8": _split(b"a\n\xff\xfe\x00b\n"),
    "split file with a backslash id": _split(b"..\\..\\evil\n"),
    "split file with an id holding a space": _split(b"my image\n"),
    "split file with three columns": _split(b"a 1 extra\n"),
}

DROPPED: dict[str, Builder] = {
    "nan coordinate": _xml(annotation(x1="nan")),
    "inf coordinate": _xml(annotation(x2="inf")),
    "1e30 coordinate": _xml(annotation(x2="1e30")),
    "-1e30 coordinate": _xml(annotation(x1="-1e30")),
    "box far outside the image": _xml(annotation(x1=100, x2=120)),
}
