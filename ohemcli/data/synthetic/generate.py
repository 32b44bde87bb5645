"""The built-in synthetic VOC-format data set (``--data synth``).

Each 320x240 image holds 1 to 5 objects of six classes that differ in *shape and texture*:

``disc`` (filled circle, dots, usually red), ``ring`` (annulus, shaded solid, green), ``triangle``
(irregular, checker, blue), ``cross`` (plus sign, shaded solid, yellow), ``striped_box`` (rectangle
of aspect 1:1 to 1:2, stripes, magenta) and ``star`` (five points, shaded solid, cyan).

An object takes its class colour three times in four, else any hue, so colour is a cue but not
the answer. The clutter is what makes hard-negative mining matter:

- the background is a low-frequency colour field with muted striped/checkered/noisy patches,
  random lines and small blobs;
- *wrong-shape distractors* (ellipse, hexagon, pentagon, crescent, L, T, arc) wear the colour and
  texture of a class: only their shape tells them apart (a pentagon is a star without points,
  a T is a cross without an arm, an arc is a broken ring);
- *fragments* are class shapes cut by a straight line down to 20-45 % of their area: heavily
  cut objects that are not annotated.

Objects are 16 to 150 px across (log-uniform), may overlap (later shapes occlude earlier ones),
and about one in seven is cut by the image border (``truncated``). A box is the extent of the
object's *visible* pixels, as in VOC. An object is ``difficult`` when it is under 20 px or less
than half of it is visible; one with under 20 % visible is not annotated at all.

Generation is deterministic: image ``i`` draws from ``numpy.random.default_rng([seed, i])``, all
drawing is OpenCV on integer coordinates and JPEGs use a fixed quality, so the same seed gives
byte-identical files.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from ohemcli.boxes import iou_np
from ohemcli.data.synthetic.shapes import CLASS_SHAPES, DISTRACTOR_SHAPES
from ohemcli.errors import UserError
from ohemcli.fileio import cache_dir
from ohemcli.progress import make_progress

SYNTH_VERSION = "v1"  # bump whenever the generator's output changes; it names the cache folder
SYNTH_CLASSES: tuple[str, ...] = ("disc", "ring", "triangle", "cross", "striped_box", "star")
IMAGE_W, IMAGE_H = 320, 240
MIN_SIDE, MAX_SIDE = 16, 148  # the full size of an object's shape, in pixels
JPEG_QUALITY = 90
_PAD = MAX_SIDE  # margin around the canvas: a shape centred near the border never overflows it
# per class: usual hue (0..1) and texture; shape is in CLASS_SHAPES
_CLASS_STYLE = {"disc": (0.0, "dots"), "ring": (0.33, "solid"), "triangle": (0.62, "checker"),
                "cross": (0.15, "solid"), "striped_box": (0.83, "stripes"),
                "star": (0.5, "solid")}  # fmt: skip
Rng = np.random.Generator


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An HSV colour (all in 0..1) as a BGR float array in 0..255."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return np.array([b, g, r]) * 255.0


def _texture(kind: str, n: int, s: float, colour: np.ndarray, rng: Rng) -> np.ndarray:
    """An (n, n, 3) float texture of ``kind`` whose pattern scales with the object size ``s``."""
    other = colour * 0.35 if rng.random() < 0.6 else colour * 0.4 + 150.0
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    period = float(np.clip(s / 5.0, 4.0, 14.0))
    if kind == "stripes":
        a = rng.uniform(0, np.pi)
        second = ((xx * np.cos(a) + yy * np.sin(a)) // (period / 2)) % 2 == 1
    elif kind == "checker":
        second = ((xx // (period / 2)) + (yy // (period / 2))) % 2 == 1
    elif kind == "dots":
        cx, cy = (xx % period) - period / 2, (yy % period) - period / 2
        second = cx * cx + cy * cy < (period * 0.3) ** 2
    else:  # solid, with a linear shading so it is not flat paint
        a = rng.uniform(0, 2 * np.pi)
        shade = 0.75 + 0.5 * ((xx * np.cos(a) + yy * np.sin(a)) / max(n, 1) + 0.5) / 2
        return colour[None, None, :] * shade[..., None]
    return np.where(second[..., None], other, colour)


def _background(rng: Rng) -> np.ndarray:
    """A cluttered, muted background: colour field, textured patches, lines, blobs."""
    field = rng.uniform(60, 190, (rng.integers(3, 7), rng.integers(4, 9), 3)).astype(np.float32)
    field = 0.5 * field + 0.5 * field.mean(axis=2, keepdims=True)  # muted, objects stand out
    img = cv2.resize(field, (IMAGE_W, IMAGE_H), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(2, 6)):  # large low-contrast textured patches
        w, h = rng.integers(30, 140, 2)
        x, y = rng.integers(-20, IMAGE_W - 10), rng.integers(-20, IMAGE_H - 10)
        colour = _hsv(rng.random(), rng.uniform(0.1, 0.35), rng.uniform(0.35, 0.75))
        kind = ("stripes", "checker", "dots", "solid")[rng.integers(4)]
        tex = _texture(kind, int(max(w, h)), rng.uniform(40, 80), colour, rng)
        region = img[max(y, 0) : y + h, max(x, 0) : x + w]
        region[:] = 0.5 * region + 0.5 * tex[: region.shape[0], : region.shape[1]]
    for _ in range(rng.integers(10, 25)):  # lines and small blobs of any colour
        colour = _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.2, 0.9)).tolist()
        p = (int(rng.integers(IMAGE_W)), int(rng.integers(IMAGE_H)))
        if rng.random() < 0.6:
            q = (p[0] + int(rng.integers(-80, 80)), p[1] + int(rng.integers(-80, 80)))
            cv2.line(img, p, q, colour, int(rng.integers(1, 4)))
        else:
            cv2.circle(img, p, int(rng.integers(2, 7)), colour, -1)
    return img


def _paste(canvas: np.ndarray, owner: np.ndarray, item: dict, centre: tuple, idx: int) -> None:
    """Composite an item's local mask centred at ``centre`` (image coordinates) onto the canvas.

    Canvas and owner map carry a margin of ``_PAD`` pixels on every side that absorbs whatever
    lies beyond the image border; it is cropped away at the end.
    """
    n = item["mask"].shape[0]
    x0, y0 = centre[0] - n // 2 + _PAD, centre[1] - n // 2 + _PAD
    m = item["mask"] > 0
    canvas[y0 : y0 + n, x0 : x0 + n][m] = item["tex"][m]
    owner[y0 : y0 + n, x0 : x0 + n][m] = idx


def _shape_item(rng: Rng, is_object: bool) -> dict:
    """Draw one object, wrong-shape distractor or fragment on its own local mask."""
    cls = SYNTH_CLASSES[rng.integers(len(SYNTH_CLASSES))]
    s = float(np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE if is_object else 100))))
    n = int(np.ceil(s)) + 4
    mask = np.zeros((n, n), np.uint8)
    kind = "object" if is_object else ("distractor" if rng.random() < 0.65 else "fragment")
    if kind == "distractor":
        names = sorted(DISTRACTOR_SHAPES)
        DISTRACTOR_SHAPES[names[rng.integers(len(names))]](mask, n / 2, s / 2, rng)
    else:
        CLASS_SHAPES[cls](mask, n / 2, s / 2, rng)
    if kind == "fragment":  # keep 20-45 % of the shape on one side of a random straight cut
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:n, 0:n]
        proj = xx * np.cos(a) + yy * np.sin(a)
        mask[proj > np.quantile(proj[mask > 0], rng.uniform(0.2, 0.45))] = 0
    hue, texture = _CLASS_STYLE[cls]
    hue = hue + rng.normal(0, 0.02) if rng.random() < 0.75 else rng.random()
    colour = _hsv(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    tex = _texture(texture, n, s, colour, rng)
    return {"kind": kind, "cls": cls, "size": s, "mask": mask, "tex": tex}


def _place(rng: Rng, item: dict, boxes: list[tuple[float, ...]]) -> tuple[int, int]:
    """A centre for ``item``: sometimes cut by the border, objects rarely overlapping much."""
    half = item["size"] / 2
    for _ in range(20):
        if item["kind"] == "object" and rng.random() < 0.15:  # cut by a random border
            inset, side = rng.uniform(-0.4, 0.7) * half, rng.integers(4)  # left right top bottom
            cx = {0: inset, 1: IMAGE_W - inset}.get(int(side), rng.uniform(0, IMAGE_W))
            cy = {2: inset, 3: IMAGE_H - inset}.get(int(side), rng.uniform(0, IMAGE_H))
        else:
            cx = rng.uniform(min(half, IMAGE_W / 2), max(IMAGE_W - half, IMAGE_W / 2))
            cy = rng.uniform(min(half, IMAGE_H / 2), max(IMAGE_H - half, IMAGE_H / 2))
        box = (cx - half, cy - half, cx + half, cy + half)
        if (
            item["kind"] != "object"
            or not boxes
            or (iou_np(np.array(box), np.array(boxes)) < 0.3).all()
        ):
            break
    boxes.append(box)
    return round(cx), round(cy)


def render_image(seed: int, index: int) -> tuple[np.ndarray, list[dict]]:
    """Image ``index`` of the set made with ``seed``: (BGR uint8 image, annotated objects).

    Each object is ``{"name", "box" (0-based inclusive x1 y1 x2 y2 ints), "difficult",
    "truncated"}``.
    """
    rng = np.random.default_rng([seed, index])
    canvas = cv2.copyMakeBorder(_background(rng), _PAD, _PAD, _PAD, _PAD, cv2.BORDER_CONSTANT)
    owner = np.full(canvas.shape[:2], -1, np.int32)
    n_obj, n_neg = int(rng.integers(1, 6)), int(rng.integers(3, 9))
    items = [_shape_item(rng, i < n_obj) for i in range(n_obj + n_neg)]
    order = rng.permutation(len(items))  # objects and distractors occlude each other at random
    placed: list[tuple[float, ...]] = []
    for idx in order:
        _paste(canvas, owner, items[idx], _place(rng, items[idx], placed), int(idx))
    img, owner = canvas[_PAD:-_PAD, _PAD:-_PAD], owner[_PAD:-_PAD, _PAD:-_PAD]
    img = cv2.GaussianBlur(img, (3, 3), 0.7) + rng.normal(0, 5, img.shape)
    objects = []
    for idx, item in enumerate(items[:n_obj]):
        ys, xs = np.nonzero(owner == idx)
        visible = len(xs) / max(int((item["mask"] > 0).sum()), 1)
        if visible < 0.2 or xs.max() - xs.min() < 2 or ys.max() - ys.min() < 2:
            continue  # a sliver: neither a positive nor worth a box
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        truncated = box[0] == 0 or box[1] == 0 or box[2] == IMAGE_W - 1 or box[3] == IMAGE_H - 1
        difficult = item["size"] < 20 or visible < 0.5
        objects.append(
            {"name": item["cls"], "box": box, "difficult": difficult, "truncated": truncated}
        )
    return np.clip(img, 0, 255).astype(np.uint8), objects


def annotation_xml(image_id: str, objects: list[dict]) -> str:
    """The VOC XML of one image (tab-indented like the VOC devkit's files)."""
    parts = [
        f"<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        f"\t<source>\n\t\t<database>ohemcli synthetic {SYNTH_VERSION}</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{IMAGE_W}</width>\n\t\t<height>{IMAGE_H}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
    ]
    for o in objects:
        # VOC is 1-based and inclusive: add 1 to our 0-based inclusive pixel indices.
        x1, y1, x2, y2 = (v + 1 for v in o["box"])
        parts.append(
            f"\t<object>\n\t\t<name>{o['name']}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{int(o['truncated'])}</truncated>\n"
            f"\t\t<difficult>{int(o['difficult'])}</difficult>\n"
            f"\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymin>{y1}</ymin>\n"
            f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        )
    return "".join(parts) + "</annotation>\n"


def _is_complete(root: Path) -> bool:
    return (root / "synth.json").is_file()  # written last, so only a finished set has it


def generate_synthetic(
    out: Path, trainval: int = 400, test: int = 150, seed: int = 0, show_progress: bool = True
) -> Path:
    """Write the synthetic set in VOC layout into ``out`` and return ``out``.

    Everything is written into a hidden sibling folder that is renamed onto ``out`` at the end,
    so an interrupted run never leaves a folder that looks complete. ``out`` must not exist or be
    an empty folder.
    """
    out = Path(out)
    if trainval < 1 or test < 1:
        raise UserError(f"--trainval {trainval} / --test {test}: both must be at least 1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_all(tmp, trainval, test, seed, show_progress)
        if out.is_dir():
            out.rmdir()  # empty (checked above); rename cannot replace a folder on every OS
        os.replace(tmp, out)
    except OSError:
        if not _is_complete(out):  # another process may have finished the same folder first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_all(root: Path, trainval: int, test: int, seed: int, show_progress: bool) -> None:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(trainval + test)]
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("synthetic images", total=len(ids))
        for i, image_id in enumerate(ids):
            img, objects = render_image(seed, i)
            cv2.imwrite(
                str(root / "JPEGImages" / f"{image_id}.jpg"),
                img,
                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
            )
            (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, objects))
            progress.advance(task)
    main = root / "ImageSets" / "Main"
    (main / "trainval.txt").write_text("".join(f"{i}\n" for i in ids[:trainval]))
    (main / "test.txt").write_text("".join(f"{i}\n" for i in ids[trainval:]))
    info = {
        "version": SYNTH_VERSION,
        "seed": seed,
        "trainval": trainval,
        "test": test,
        "classes": list(SYNTH_CLASSES),
    }
    (root / "synth.json").write_text(json.dumps(info, indent=2) + "\n")  # written last


def ensure_default_synth() -> Path:
    """The default synthetic set in ``cache_dir()/synth-<version>``, generated on first use."""
    root = cache_dir() / f"synth-{SYNTH_VERSION}"
    if not _is_complete(root):
        if root.exists():  # not ours or unfinished: never serve it, never silently delete it
            raise UserError(f"{root}: incomplete synthetic set (no synth.json); delete it")
        generate_synthetic(root)
    return root


def resolve_data_root(data: str) -> Path:
    """``"synth"`` means the default synthetic set; anything else must be an existing folder."""
    if data == "synth":
        return ensure_default_synth()
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: data root does not exist")
    return root
