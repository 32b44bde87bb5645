"""Checks on what a data set's files say: names, paths, image sizes and boxes.

Everything read from a data set is untrusted. Names (image ids, class names) become parts of file
names, so they must not hold path separators, ``..`` or control characters; paths built from them
are checked to stay under their root. Sizes and boxes must be finite and in range. Images too large
to decode safely are refused from their header, before any pixel is read.
"""

from __future__ import annotations

import math
import os
import unicodedata
from pathlib import Path

from ohemcli.errors import UserError, quote

MAX_IMAGE_SIDE = 10_000  # pixels; a larger side is refused before decoding
MAX_IMAGE_PIXELS = 80_000_000  # width * height; decoding more would take gigabytes of memory
# Bytes (UTF-8) of an image id or class name: file systems count a name's bytes, about 255, and a
# results file name adds about 20 to a class name. 150 CJK characters are 450 bytes.
MAX_NAME_BYTES = 200
# Characters that XML 1.0 cannot hold besides the control characters refused anyway: a name with
# one would be written into annotations that no XML parser (ours included) reads back.
_NOT_XML = frozenset("\ufffe\uffff")
# A box may overhang the image by this share of the side (at least 2 px) and is then clipped;
# one that overhangs more is wrong (swapped axes, another image's size) and is dropped.
BOX_OVERHANG = 0.05


def name_problem(name: str) -> str | None:
    """Why ``name`` is unsafe as part of a file name, or None when it is safe."""
    if not name:
        return "is empty"
    if any(unicodedata.category(c) == "Cs" for c in name):
        # A lone surrogate (from a JSON escape such as "\ud800") cannot be encoded: writing a
        # file name or text with it raises far from here.
        return "holds a lone surrogate, which is not valid Unicode"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes in UTF-8"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if ".." in name or name == ".":
        return "holds '..' or is '.'"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return "holds a control character"
    if any(c in _NOT_XML for c in name):
        return "holds a character that XML cannot hold (U+FFFE or U+FFFF)"
    return None


def check_name(name: str, what: str, where: str | Path) -> str:
    """Return ``name`` when it is safe to use in a file name, else a UserError naming ``where``."""
    problem = name_problem(name)
    if problem is not None:
        raise UserError(f"{where}: {what} {quote(name)} {problem}; refused")
    return name


def child_path(root: Path, *parts: str) -> Path:
    """``root / parts...``, refused when it would leave ``root``.

    Lexical (``os.path.normpath``), not ``resolve()``: a data folder reached through a symbolic
    link is legitimate; what must not happen is a name from the data climbing out of its folder.
    """
    path = Path(root).joinpath(*parts)
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, full]) != base or full == base:
        raise UserError(f"{path}: refused, the name {quote('/'.join(parts))} leaves {root}")
    return path


def check_image_size(width: float, height: float, where: str | Path) -> tuple[int, int]:
    """``(width, height)`` as ints when finite, at least 1 and within the pixel limits."""
    if not (math.isfinite(width) and math.isfinite(height)):
        raise UserError(f"{where}: image size {width} x {height} is not finite")
    w, h = int(round(width)), int(round(height))
    if w < 1 or h < 1:
        raise UserError(f"{where}: image size {w} x {h}; width and height must be at least 1")
    if max(w, h) > MAX_IMAGE_SIDE or w * h > MAX_IMAGE_PIXELS:
        raise UserError(
            f"{where}: image size {w} x {h} is over the limit ({MAX_IMAGE_SIDE} px a side, "
            f"{MAX_IMAGE_PIXELS // 1_000_000} Mpx); refused"
        )
    return w, h


def image_header_size(path: Path) -> tuple[int, int]:
    """An image file's (width, height) from its header, checked against the limits.

    PIL's ``open`` is lazy: it reads the header and decodes no pixel.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # PIL's own guard, above twice its 89 Mpx warning
        raise UserError(f"{path}: image size is over the limit (PIL's); refused") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read image ({type(exc).__name__})") from None
    return check_image_size(width, height, path)


def clip_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, str]:
    """A 0-based box clipped to the image, or (None, why) when it is not usable.

    Non-finite coordinates, and boxes that overhang the image by more than ``BOX_OVERHANG`` of a
    side (at least 2 px), are not usable.
    """
    if not all(math.isfinite(v) for v in box):
        return None, "non-finite coordinates"
    x1, y1, x2, y2 = box
    slack_x, slack_y = max(2.0, BOX_OVERHANG * width), max(2.0, BOX_OVERHANG * height)
    if min(x1, x2) < -slack_x or max(x1, x2) > width - 1 + slack_x:
        return None, f"outside the {width} px wide image"
    if min(y1, y2) < -slack_y or max(y1, y2) > height - 1 + slack_y:
        return None, f"outside the {height} px high image"
    clipped = (
        min(max(x1, 0.0), width - 1.0),
        min(max(y1, 0.0), height - 1.0),
        min(max(x2, 0.0), width - 1.0),
        min(max(y2, 0.0), height - 1.0),
    )
    return clipped, ""
