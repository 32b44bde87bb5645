"""Where the splits of a COCO-format data set live: three layouts, one lookup.

``--data`` (``data.root``) names a COCO set in one of three ways:

* **COCO's own layout**: ``DIR/annotations/instances_<split>.json`` with the images of each split
  in ``DIR/<split>/`` (``instances_train2017.json`` and ``train2017/``); the splits are the names
  after ``instances_``.
* **A Roboflow-style export**: ``DIR/<split>/_annotations.coco.json`` with the images beside it
  (``train/``, ``valid/``, ``test/``); the splits are the folder names.
* **Explicit json files**: ``--data train.json,test.json`` (one or more, comma-separated), the
  images under ``--images DIR`` (``data.images``; default: each json's own folder). A split is
  named by its file's stem, less an ``instances_`` prefix.

A split asked for by a name the set lacks is looked for among aliases, so that the default
``trainval``/``test`` of every preset work on every layout: ``trainval`` falls back to ``train``,
then to the first split whose name starts with ``train`` (``train2017``), then (explicit files) to
the first json given; ``test`` falls back to ``valid``, ``val``, a split starting with ``val`` or
``test``, then to the last json given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ohemcli.data.checks import check_name
from ohemcli.errors import UserError, quote

COCO_PREFIX = "instances_"  # annotations/instances_<split>.json
ROBOFLOW_JSON = "_annotations.coco.json"  # <split>/_annotations.coco.json


@dataclass(frozen=True)
class COCOSplit:
    """One split of a COCO set: its json and the folder its ``file_name`` entries are under."""

    name: str
    json_path: Path
    image_dir: Path


@dataclass(frozen=True)
class COCOLayout:
    """The splits found at ``--data``, in the order found, and which layout held them."""

    source: str  # what --data said
    kind: str  # "coco", "roboflow" or "files"
    splits: dict[str, COCOSplit]

    def split(self, requested: str) -> COCOSplit:
        """The split named ``requested``, or its alias (see the module docstring)."""
        if requested in self.splits:
            return self.splits[requested]
        names = list(self.splits)
        candidates: list[str] = []
        if requested == "trainval":
            candidates = ["train", *[n for n in names if n.startswith("train")]]
            candidates += names[:1] if self.kind == "files" else []
        elif requested == "test":
            candidates = ["valid", "val", *[n for n in names if n.startswith(("val", "test"))]]
            candidates += names[-1:] if self.kind == "files" else []
        for name in candidates:
            if name in self.splits:
                return self.splits[name]
        raise UserError(
            f"{self.source}: no split {quote(requested)} in this COCO set (it has "
            f"{', '.join(names)})"
        )


def _split_name(stem: str, where: Path) -> str:
    name = stem[len(COCO_PREFIX) :] if stem.startswith(COCO_PREFIX) else stem
    return check_name(name, "split name", where)


def find_layout(data: str, images: str | None = None) -> COCOLayout | None:
    """The COCO layout at ``data`` (a folder, or json files separated by commas), or None when
    ``data`` is not a COCO set (then it is read as a VOC root)."""
    if data.endswith(".json") or ".json," in data:
        return _explicit_files(data, images)
    root = Path(data).expanduser()
    if not root.is_dir():
        return None
    found = sorted((root / "annotations").glob(f"{COCO_PREFIX}*.json"))
    if found:
        splits = {}
        for path in found:
            name = _split_name(path.stem, path)
            splits[name] = COCOSplit(name, path, Path(images) if images else root / name)
        return COCOLayout(data, "coco", splits)
    found = sorted(root.glob(f"*/{ROBOFLOW_JSON}"))
    if found:
        splits = {}
        for path in found:
            name = check_name(path.parent.name, "split folder name", path)
            splits[name] = COCOSplit(name, path, Path(images) if images else path.parent)
        return COCOLayout(data, "roboflow", splits)
    return None


def _explicit_files(data: str, images: str | None) -> COCOLayout:
    splits: dict[str, COCOSplit] = {}
    for part in data.split(","):
        path = Path(part.strip()).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: COCO json file not found (--data)")
        name = _split_name(path.stem, path)
        if name in splits:
            raise UserError(f"{path}: a second json for split {quote(name)} (--data)")
        image_dir = Path(images).expanduser() if images else path.parent
        if not image_dir.is_dir():
            raise UserError(f"{image_dir}: image folder not found (--images)")
        splits[name] = COCOSplit(name, path, image_dir)
    return COCOLayout(data, "files", splits)
