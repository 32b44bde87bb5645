"""Object proposals: selective search (OpenCV contrib, fast mode) or Fast R-CNN's .mat files.

Selective search runs in ``workers`` processes (one OpenCV thread each) and its boxes are cached
per image (ohemcli.data.proposals.cache):
``cache_dir()/proposals/ssfast-<version>[-max<side>]/<sha[:2]>/<sha>-<cap>.npy``,
keyed by the SHA-1 of the image file's bytes, the method and ``PROPOSALS_VERSION``, ``max_side``
and ``max_boxes``. The boxes depend on the pixels alone, so an image listed in two splits
(voc100's trainval and test hold the same 100 images), in two data roots or in a COCO set and a
VOC root is searched once; a replaced image is searched again, and training and evaluation share
one computation. A file that does not load is recomputed (one warning for the lot). A smaller
``max_boxes`` is served from the cache of a larger one (the cap is a prefix), so trying caps costs
no new search.

Choices, and why:

- **Fast mode, optionally on a shrunk image.** Selective search's cost grows with the pixel
  count: at full size the 320x240 synthetic images take about 0.5 CPU-s each, too slow for
  ``make demo`` on two cores. With ``max_side`` (the config's ``data.ss_max_side``) images whose
  longer side exceeds it are shrunk first and the boxes scaled back, about half the time at 240 px.
  On the synthetic set, where objects are 16 px and up, recall at IoU 0.5 stays near 0.98 (0.99 at
  full size), so nothing else is mixed in. Larger images lose more (BCCD test: 0.80 at 240 px), so
  the paper's preset runs at full size (``max_side`` 0), as Fast R-CNN did.
- **Deterministic order.** OpenCV ranks regions with C ``rand()``, so the order (and thus which
  boxes survive ``max_boxes``) would depend on what a worker ran before; we seed it per image.
- Boxes are rounded to whole pixels, clipped to the image, de-duplicated keeping the first
  (best-ranked) copy, and those under ``MIN_BOX_SIDE`` wide or tall are dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from ohemcli.data.dataset import Dataset
from ohemcli.data.proposals.cache import (
    cache_path,
    cached_boxes,
    image_digest,
    save_boxes,
)
from ohemcli.data.voc import MIN_BOX_SIDE
from ohemcli.device import available_cpus
from ohemcli.errors import UserError
from ohemcli.progress import make_progress

log = logging.getLogger("ohemcli")

SELECTIVE_SEARCH = "selective_search"
RELEASE = "release"  # the Fast R-CNN release's .mat files when found, else selective search
RELEASE_DIR = "selective_search_data"  # where ``ohem data download voc2007-proposals`` puts them
_fallback_noted: set[str] = set()  # data roots whose fallback line was already printed


def _seed_c_rand(seed: int) -> None:
    """Seed C ``rand()``, which OpenCV's selective search uses to rank its regions."""
    # Without libc symbols (Windows) the order may vary from run to run; the boxes do not.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).srand(seed)


def clean_boxes(boxes: np.ndarray, width: int, height: int, max_boxes: int) -> np.ndarray:
    """Round, clip, drop boxes under ``MIN_BOX_SIDE``, de-duplicate (first copy wins), cap.

    ``max_boxes`` 0 keeps every box (the paper's preset: the release's boxes, all of them).
    """
    boxes = np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    keep = (boxes[:, 2] - boxes[:, 0] >= MIN_BOX_SIDE) & (boxes[:, 3] - boxes[:, 1] >= MIN_BOX_SIDE)
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)][: max_boxes or None].astype(np.float32)  # 0: no cap


def selective_search(path: str, max_boxes: int, max_side: int = 0) -> np.ndarray:
    """Selective search (fast mode) on one image file: (R, 4) float32 0-based x1 y1 x2 y2.

    ``max_side`` > 0 shrinks the image so its longer side is at most that many pixels first.
    """
    # BGR, which OpenCV's selective search expects; pixels as stored, as voc.load_image reads them
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise UserError(f"{path}: cannot read image")
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width)) if max_side > 0 else 1.0
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    _seed_c_rand(0)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(image)
    ss.switchToSelectiveSearchFast()
    rects = np.asarray(ss.process(), np.float64).reshape(-1, 4)  # x, y, w, h on the shrunk image
    sx, sy = width / image.shape[1], height / image.shape[0]
    # A rect covers pixels x .. x+w-1; back on the original grid its last pixel is (x+w)*sx - 1.
    x, y, w, h = rects.T
    boxes = np.stack([x * sx, y * sy, (x + w) * sx - 1, (y + h) * sy - 1], axis=1)
    return clean_boxes(boxes, width, height, max_boxes)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend


def compute_selective_search(
    paths: Sequence[str],
    max_boxes: int,
    workers: int | None = None,
    show_progress: bool = True,
    max_side: int = 0,
) -> list[np.ndarray]:
    """Run selective search on every image file of ``paths`` in ``workers`` processes (no
    cache); the boxes of each, in the order of ``paths``."""
    paths = [str(p) for p in paths]
    if not paths:
        return []
    workers = max(1, min(workers or available_cpus(), len(paths)))
    one = partial(selective_search, max_boxes=max_boxes, max_side=max_side)
    results: list[np.ndarray] = []
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task(f"selective search ({workers} proc)", total=len(paths))
        if workers == 1:
            for path in paths:
                results.append(one(path))
                progress.advance(task)
        else:
            # spawn, not fork: the parent may hold torch/OpenMP threads that a fork would break
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                for boxes in pool.imap(one, paths, chunksize=2):
                    results.append(boxes)
                    progress.advance(task)
    return results


def load_mat_proposals(path: Path, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Read a Fast R-CNN release file (``voc_2007_<split>.mat``) for the images ``image_ids``.

    The file holds a cell ``boxes`` with one K x 4 array per image, in split order, with columns
    ``y1 x1 y2 x2`` and 1-based (MATLAB) coordinates. Returns 0-based ``x1 y1 x2 y2`` float32.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: proposal file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, NotImplementedError) as exc:
        raise UserError(f"{path}: not a readable .mat file ({exc})") from None
    if "boxes" not in mat:
        raise UserError(f"{path}: no 'boxes' cell in this .mat file")
    cells = mat["boxes"].ravel()
    if len(cells) != len(image_ids):
        raise UserError(
            f"{path}: holds boxes for {len(cells)} images but the split lists {len(image_ids)}"
        )
    out = {}
    for image_id, cell in zip(image_ids, cells, strict=True):
        yx = np.asarray(cell, dtype=np.float64).reshape(-1, 4)
        # Reorder y1 x1 y2 x2 -> x1 y1 x2 y2, then subtract 1: MATLAB is 1-based, we are 0-based.
        out[image_id] = (yx[:, [1, 0, 3, 2]] - 1.0).astype(np.float32)
    return out


def release_mat(root: Path, split: str) -> Path | None:
    """The Fast R-CNN release's ``voc_2007_<split>.mat`` for a VOC2007 root, or None.

    Only a root named ``VOC2007`` has them. They are looked for in ``selective_search_data/``
    under the root's parent (``VOCdevkit/``) and under its grandparent: the latter is where
    ``ohem data download voc2007`` and ``ohem data download voc2007-proposals`` with the same
    ``--root`` put them (``ROOT/VOCdevkit/VOC2007`` and ``ROOT/selective_search_data``).
    """
    root = Path(root).absolute()
    if root.name.upper() != "VOC2007":
        return None
    for base in (root.parent, root.parent.parent):
        path = base / RELEASE_DIR / f"voc_2007_{split}.mat"
        if path.is_file():
            return path
    return None


def resolve_source(source: str, root: Path, split: str) -> str:
    """The proposal source for one split: ``release`` becomes the .mat path or selective search.

    Falling back says so in one line (once per data root), with the command that fetches the
    release's boxes. Other sources pass through, with ``{split}`` replaced by the split.
    """
    if source != RELEASE:
        return source.replace("{split}", split)  # one .mat file per split
    mat = release_mat(root, split)
    if mat is not None:
        return str(mat)
    if str(root) not in _fallback_noted:
        _fallback_noted.add(str(root))
        log.warning(
            "%s: no Fast R-CNN release proposals (%s/voc_2007_%s.mat) next to it; using OpenCV "
            "selective search. For the paper's boxes: ohem data download voc2007-proposals "
            "--root <the folder holding VOCdevkit>",
            root, RELEASE_DIR, split,
        )  # fmt: skip
    return SELECTIVE_SEARCH


def _search_and_cache(
    todo: dict[str, str], max_boxes: int, workers: int | None, show_progress: bool, max_side: int
) -> dict[str, np.ndarray]:
    """Selective search on the images ``todo`` (digest -> a path of it), each cached; a cache that
    cannot be written costs one warning, not the boxes."""
    digests = list(todo)
    found = compute_selective_search(
        [todo[d] for d in digests], max_boxes, workers, show_progress, max_side
    )
    boxes = dict(zip(digests, found, strict=True))
    for digest, b in boxes.items():
        path = cache_path(digest, max_boxes, max_side)
        try:
            save_boxes(path, b)
        except OSError as exc:  # a full disk, say: the boxes are still good for this run
            log.warning(
                "%s: cannot write the proposal cache under OHEM_CACHE (%s); the boxes will be "
                "computed again next time", path, exc.strerror or type(exc).__name__,
            )  # fmt: skip
            break
    return boxes


def load_proposals(
    dataset: Dataset,
    source: str = SELECTIVE_SEARCH,
    max_boxes: int = 2000,
    workers: int | None = None,
    show_progress: bool = True,
    max_side: int = 0,
) -> dict[str, np.ndarray]:
    """Proposals for every image of ``dataset``: image_id -> (R, 4) float32 0-based x1 y1 x2 y2.

    ``source`` is ``"selective_search"`` (computed once, then served from the cache) or the path
    of a Fast R-CNN .mat file (see :func:`resolve_source` for ``"release"``). Either way boxes are
    cleaned and capped at ``max_boxes`` (0: no cap).
    """
    if max_boxes < 0:
        raise UserError(f"data.max_proposals {max_boxes}: must be 0 (no cap) or more")
    ids = [r.image_id for r in dataset.records]
    if source != SELECTIVE_SEARCH:
        raw = load_mat_proposals(Path(source), ids)
        return {
            r.image_id: clean_boxes(raw[r.image_id], r.width, r.height, max_boxes)
            for r in dataset.records
        }
    digests = [image_digest(r.image_path) for r in dataset.records]
    boxes: dict[str, np.ndarray] = {}
    todo: dict[str, str] = {}  # digest -> path: an image listed twice is searched once
    bad: list[str] = []
    for record, digest in zip(dataset.records, digests, strict=True):
        if digest in boxes or digest in todo:
            continue
        cached = cached_boxes(digest, max_boxes, max_side, bad)
        if cached is None:
            todo[digest] = str(record.image_path)
        else:
            boxes[digest] = cached
    if bad:  # one line for the lot: a damaged cache folder would otherwise flood the log
        log.warning(
            "%s: proposal cache does not load; computing it again%s",
            bad[0], f" (and {len(bad) - 1} more files)" if len(bad) > 1 else "",
        )  # fmt: skip
    if todo:
        boxes.update(_search_and_cache(todo, max_boxes, workers, show_progress, max_side))
    return {i: boxes[d] for i, d in zip(ids, digests, strict=True)}


def proposal_recall(dataset: Dataset, proposals: dict[str, np.ndarray], iou: float) -> float:
    """Fraction of non-difficult ground-truth boxes that some proposal covers at IoU >= ``iou``.

    NaN when the split has no non-difficult boxes.
    """
    import torch
    from torchvision.ops import box_iou

    covered = total = 0
    for r in dataset.records:
        gt = r.boxes[~r.difficult]
        total += len(gt)
        boxes = proposals.get(r.image_id)
        if len(gt) == 0 or boxes is None or len(boxes) == 0:
            continue
        best = box_iou(torch.from_numpy(gt), torch.from_numpy(boxes)).max(dim=1).values
        covered += int((best >= iou).sum())
    return covered / total if total else float("nan")


def mean_boxes_per_image(proposals: dict[str, np.ndarray]) -> float:
    """The mean number of proposals per image (0 for no images)."""
    return float(np.mean([len(b) for b in proposals.values()])) if proposals else 0.0
