"""``ohem data convert``: a data set written in the other format, split by split.

``to="coco"`` writes COCO's own layout, ``DST/annotations/instances_<split>.json`` and the images
of each split in ``DST/<split>/``; ``to="voc"`` writes a VOC root (``Annotations/``,
``JPEGImages/``, ``ImageSets/Main/<split>.txt``). The splits are those of the source: ``trainval``
and ``test`` of a VOC root (those of them it has), every split of a COCO set. Everything is
written into a temporary folder beside ``DST`` and renamed onto it at the end, so an interrupted
conversion leaves no half-written data set: an exception or SIGTERM removes the temporary folder,
and one left by a kill -9 (its owner's pid no longer running) is removed by the next conversion
into the same parent folder.

What is kept: boxes as the reader gives them (degenerate ones dropped), class names, and for
COCO -> VOC crowd regions become ``difficult`` (VOC has no ignore region; trained on as a VOC
root, a crowd region's proposals are background, no longer ignored). VOC -> COCO numbers the
images 1.. in split order and the categories 1..K in label order (:func:`coco_ids`) and keeps a
difficult box as ``"difficult": 1``, a key COCO tools ignore and this reader honours.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ohemcli.data.checks import check_name
from ohemcli.data.coco.dataset import COCODataset, coco_ids, crowd_mask
from ohemcli.data.coco.json_file import decoded_size
from ohemcli.data.coco.layout import COCO_PREFIX, find_layout
from ohemcli.data.splits import Dataset, open_dataset
from ohemcli.data.voc import IMAGE_SUFFIXES
from ohemcli.errors import UserError

FORMATS = ("coco", "voc")
OWNER_FILE = ".convert.pid"  # inside a temporary folder: the pid of the conversion writing it
TEMP_SUFFIX = ".convert.tmp"
UNOWNED_GRACE_S = 60  # a temporary folder without its pid file yet is left alone this long


def source_splits(data: str, images: str | None = None) -> list[str]:
    """The splits ``convert`` writes: every split of a COCO set; ``trainval`` and ``test`` of a
    VOC root (those it has; else every split file it has)."""
    layout = None if data == "synth" else find_layout(data, images)
    if layout is not None:
        return list(layout.splits)
    from ohemcli.data.splits import data_root

    main = data_root(data) / "ImageSets" / "Main"
    found = sorted(p.stem for p in main.glob("*.txt"))
    chosen: list[str] = [s for s in ("trainval", "test") if s in found]
    if not (chosen or found):
        raise UserError(f"{main}: no split files (*.txt)")
    return chosen or found


def convert(data: str, to: str, out: Path, images: str | None = None) -> list[str]:
    """Write the data set at ``data`` in format ``to`` to the new folder ``out``; its splits."""
    if to not in FORMATS:
        raise UserError(f"--to {to}: choose coco or voc")
    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: already exists; --out must name a new folder")
    splits = source_splits(data, images)
    datasets = [open_dataset(data, s, images=images) for s in splits]  # every check before writing
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=TEMP_SUFFIX, dir=out.parent))
    try:
        with _sigterm_raises():
            (tmp / OWNER_FILE).write_text(f"{os.getpid()}\n")
            written: dict[str, tuple[str, str]] = {}
            for dataset in datasets:
                if to == "coco":
                    _write_coco_split(dataset, tmp)
                else:
                    _write_voc_split(dataset, tmp, written)
            (tmp / OWNER_FILE).unlink()
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [d.split for d in datasets]


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises SystemExit meanwhile, so that the caller's cleanup runs as for Ctrl-C
    (the default action ends the process at once and leaves the temporary folder behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a value we cannot test: leave its folder
    return True


def remove_stale_temps(parent: Path) -> list[Path]:
    """Remove the temporary folders of conversions into ``parent`` whose process died (a kill
    -9 runs no cleanup); return them. A folder still being written by a live process, or too
    new to have its pid file yet, is left alone."""
    removed = []
    for tmp in parent.glob(f".*{TEMP_SUFFIX}"):
        if not tmp.is_dir() or tmp.is_symlink():
            continue
        try:
            pid = int((tmp / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is None and time.time() - tmp.stat().st_mtime < UNOWNED_GRACE_S:
            continue
        if pid is not None and _pid_alive(pid):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _file_name(dataset: Dataset, path: Path) -> str:
    if isinstance(dataset, COCODataset):  # keep the json's sub-folders
        return path.relative_to(dataset.root).as_posix()
    return path.name


def coco_document(dataset: Dataset, file_names: dict[str, str]) -> dict:
    """The COCO instances json of one split (``file_names``: record image_id -> file_name)."""
    image_ids, category_ids = coco_ids(dataset)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for r in dataset.records:
        width, height = decoded_size(r.image_path)
        iid = image_ids[r.image_id]
        images.append({"id": iid, "file_name": file_names[r.image_id], "width": width,
                       "height": height})  # fmt: skip
        crowd = crowd_mask(r)
        for box, label, difficult, is_crowd in zip(
            r.boxes.tolist(), r.labels.tolist(), r.difficult.tolist(), crowd.tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            w, h = x2 - x1, y2 - y1  # no +1: evaluation.coco's convention, read back exactly
            ann = {"id": len(annotations) + 1, "image_id": iid,
                   "category_id": category_ids[label - 1], "bbox": [x1, y1, w, h],
                   "area": w * h, "iscrowd": int(is_crowd)}  # fmt: skip
            if difficult and not is_crowd:
                ann["difficult"] = 1
            annotations.append(ann)
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, dataset.classes, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_coco_split(dataset: Dataset, tmp: Path) -> None:
    split = check_name(dataset.split, "split name", "--data")
    names = {r.image_id: _file_name(dataset, r.image_path) for r in dataset.records}
    for r in dataset.records:
        target = tmp / split / names[r.image_id]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(r.image_path, target)
    doc = coco_document(dataset, names)
    (tmp / "annotations").mkdir(exist_ok=True)
    (tmp / "annotations" / f"{COCO_PREFIX}{split}.json").write_text(json.dumps(doc))


def _voc_xml(file_name: str, width: int, height: int, objects: list[tuple]) -> str:
    parts = [f"<annotation><filename>{escape(file_name)}</filename><size><width>{width}</width>"
             f"<height>{height}</height><depth>3</depth></size>"]  # fmt: skip
    for name, (x1, y1, x2, y2), difficult in objects:
        # VOC is 1-based: add 1 to our 0-based coordinates on the way out.
        parts.append(
            f"<object><name>{escape(name)}</name><difficult>{int(difficult)}</difficult>"
            f"<bndbox><xmin>{x1 + 1!r}</xmin><ymin>{y1 + 1!r}</ymin><xmax>{x2 + 1!r}</xmax>"
            f"<ymax>{y2 + 1!r}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>\n"


def _voc_id(stem: str, split: str, image_id: str, taken: dict[str, tuple[str, str]]) -> str:
    """A VOC id not yet taken: the file's stem, else ``<stem>_<split>_<id>`` (then a count)."""
    voc_id, k = stem, 0
    while voc_id in taken:
        k += 1
        voc_id = f"{stem}_{split}_{image_id}" + (f"_{k}" if k > 1 else "")
    return voc_id


def _write_voc_split(dataset: Dataset, tmp: Path, written: dict[str, tuple[str, str]]) -> None:
    """One split into the VOC root ``tmp``; ``written`` maps each VOC id written so far (all
    splits) to its image's content digest and XML, so that two images never share one id."""
    split = check_name(dataset.split, "split name", "--data")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for r in dataset.records:
        suffix = r.image_path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise UserError(f"{r.image_path}: a VOC root holds {', '.join(IMAGE_SUFFIXES)} only")
        stem = check_name(r.image_path.stem, "image id", r.image_path)
        width, height = decoded_size(r.image_path)
        rows = zip(r.boxes.tolist(), r.labels.tolist(), r.difficult.tolist(), strict=True)
        objects = [(dataset.classes[label - 1], tuple(box), diff) for box, label, diff in rows]
        source = hashlib.sha256(r.image_path.read_bytes()).hexdigest()
        xml = _voc_xml(f"{stem}{suffix}", width, height, objects)
        if written.get(stem) == (source, xml):
            ids.append(stem)  # the same pixels with the same boxes in another split: one image
            continue
        # Same name (and size) is not the same image: other bytes, or other boxes, get their
        # own id, so that no split's image or boxes are lost to another's.
        voc_id = _voc_id(stem, split, str(r.image_id), written)
        target = tmp / "JPEGImages" / f"{voc_id}{suffix}"
        shutil.copy2(r.image_path, target)
        xml = _voc_xml(target.name, width, height, objects)
        (tmp / "Annotations" / f"{voc_id}.xml").write_text(xml)
        written[voc_id] = (source, xml)
        ids.append(voc_id)
    (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
