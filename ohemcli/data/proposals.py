"""Object proposals: selective search (OpenCV contrib, fast mode) or Fast R-CNN's .mat files.

Selective search runs in ``workers`` processes (one OpenCV thread each) and its boxes are cached
in ``cache_dir()/proposals/`` under a key made of the data set's fingerprint (ids, annotations,
each image's size and mtime), the split, the method, ``max_boxes`` and ``PROPOSALS_VERSION``: a
changed data set (or a changed recipe here) is never served stale boxes, and training and
evaluation share one computation. The file holds its fingerprint too, so a cache file of other
images under this name is recomputed (one warning), as is one that does not load. A smaller
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

from ohemcli.data.voc import MIN_BOX_SIDE, VOCDataset
from ohemcli.device import available_cpus
from ohemcli.errors import UserError
from ohemcli.fileio import atomic_write, cache_dir
from ohemcli.progress import make_progress

log = logging.getLogger("ohemcli")

PROPOSALS_VERSION = "v1-ssfast"  # change when the boxes computed here change
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
    rects = ss.process().astype(np.float64).reshape(-1, 4)  # x, y, w, h on the shrunk image
    sx, sy = width / image.shape[1], height / image.shape[0]
    # A rect covers pixels x .. x+w-1; back on the original grid its last pixel is (x+w)*sx - 1.
    x, y, w, h = rects.T
    boxes = np.stack([x * sx, y * sy, (x + w) * sx - 1, (y + h) * sy - 1], axis=1)
    return clean_boxes(boxes, width, height, max_boxes)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend


def compute_selective_search(
    dataset: VOCDataset,
    max_boxes: int,
    workers: int | None = None,
    show_progress: bool = True,
    max_side: int = 0,
) -> dict[str, np.ndarray]:
    """Run selective search on every image of ``dataset`` in ``workers`` processes (no cache)."""
    paths = [str(r.image_path) for r in dataset.records]
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
    return {r.image_id: boxes for r, boxes in zip(dataset.records, results, strict=True)}


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


SS_CACHE_TAG = "ssfast"  # OpenCV's fast selective search, in the cache file names


def _cache_path(dataset: VOCDataset, max_boxes: int, max_side: int) -> Path:
    key = f"{dataset.fingerprint()}-{dataset.split}-{SS_CACHE_TAG}-{max_boxes}-{PROPOSALS_VERSION}"
    if max_side > 0:
        key += f"-max{max_side}"
    return cache_dir() / "proposals" / f"{key}.npz"


def _cached_with_larger_cap(
    dataset: VOCDataset, ids: Sequence[str], max_boxes: int, max_side: int
) -> dict[str, np.ndarray] | None:
    """Cached boxes of the same images under a larger cap (or none), if any.

    The cap is the last step of :func:`clean_boxes`, so the first ``max_boxes`` of a longer
    cached list are exactly what a new selective search with this cap would give.
    """
    if max_boxes == 0:
        return None
    for cap in sorted(_cached_caps(dataset, max_side), key=lambda c: c or 10**9):
        if cap == 0 or cap > max_boxes:
            cached = _load(_cache_path(dataset, cap, max_side), ids, dataset.fingerprint())
            if cached is not None:
                return cached
    return None


def _cached_caps(dataset: VOCDataset, max_side: int) -> list[int]:
    """The caps of the selective-search caches of ``dataset`` at this ``max_side``."""
    pattern = _cache_path(dataset, 0, max_side).name.replace(
        f"-{SS_CACHE_TAG}-0-", f"-{SS_CACHE_TAG}-*-"
    )
    caps = []
    for path in _cache_path(dataset, 0, max_side).parent.glob(pattern):
        cap = path.name.split(f"-{SS_CACHE_TAG}-", 1)[1].split("-", 1)[0]
        if cap.isdigit() and path.name == _cache_path(dataset, int(cap), max_side).name:
            caps.append(int(cap))
    return caps


def _save(path: Path, proposals: dict[str, np.ndarray], fingerprint: str) -> None:
    """Write the cache file; one that cannot be written costs a warning, not the boxes."""
    ids = list(proposals)
    boxes = np.concatenate([proposals[i] for i in ids]) if ids else np.zeros((0, 4), np.float32)
    counts = np.array([len(proposals[i]) for i in ids], dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, ids=np.array(ids), boxes=boxes, counts=counts, fingerprint=fingerprint)

    try:
        atomic_write(path, write)
    except OSError as exc:  # a full disk, say: the boxes are still good for this run
        log.warning(
            "%s: cannot write the proposal cache under OHEM_CACHE (%s); the boxes will be "
            "computed again next time", path, exc.strerror or type(exc).__name__,
        )  # fmt: skip


def _load(path: Path, image_ids: Sequence[str], fingerprint: str) -> dict[str, np.ndarray] | None:
    """The cached proposals, or None (and one warning) when the file does not load, or was
    written for other images (another fingerprint, other ids)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, boxes, counts = [str(i) for i in z["ids"]], z["boxes"], z["counts"]
            saved = str(z["fingerprint"]) if "fingerprint" in z.files else None
        parts = np.split(boxes, np.cumsum(counts)[:-1]) if len(ids) else []
        if len(parts) != len(ids) or int(counts.sum()) != len(boxes) or boxes.shape[1:] != (4,):
            raise ValueError("ids, counts and boxes disagree")
    except Exception as exc:  # noqa: BLE001 - truncated, not a zip, wrong arrays: recompute
        log.warning("%s: proposal cache does not load (%s); computing it again", path, exc)
        return None
    if saved != fingerprint or ids != list(image_ids):
        log.warning("%s: proposal cache of other images; computing it again", path)
        return None
    return dict(zip(ids, (p.astype(np.float32, copy=False) for p in parts), strict=True))


def load_proposals(
    dataset: VOCDataset,
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
    path = _cache_path(dataset, max_boxes, max_side)
    if path.is_file():
        cached = _load(path, ids, dataset.fingerprint())
        if cached is not None:
            return cached
    wider = _cached_with_larger_cap(dataset, ids, max_boxes, max_side)
    if wider is not None:
        return {i: boxes[:max_boxes] for i, boxes in wider.items()}
    proposals = compute_selective_search(dataset, max_boxes, workers, show_progress, max_side)
    _save(path, proposals, dataset.fingerprint())
    return proposals


def proposal_recall(dataset: VOCDataset, proposals: dict[str, np.ndarray], iou: float) -> float:
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
