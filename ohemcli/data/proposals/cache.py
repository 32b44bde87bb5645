"""The per-image cache of selective-search boxes: one ``.npy`` per image and cap under
``cache_dir()/proposals/ssfast-<version>[-max<side>]/<sha[:2]>/<sha>-<cap>.npy``, keyed by the
SHA-1 of the image file's bytes; a smaller cap is served from a larger one's file (see
ohemcli.data.proposals.load)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ohemcli.fileio import atomic_write, cache_dir

PROPOSALS_VERSION = "v1-ssfast"  # change when the boxes computed in data.proposals.load change

SS_CACHE_TAG = "ssfast"  # OpenCV's fast selective search, in the cache folder's name
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content digest


def image_digest(path: Path) -> str:
    """The content identity of an image file: the SHA-1 of its bytes (hex).

    Bytes, not the path or the mtime: the same image under two splits or two data roots (voc100's
    trainval and test, a copied root) is one key, and a replaced image is another. Hashing a few
    hundred JPEGs takes well under a second; a process hashes each file once, as long as its size
    and mtime stay the same.
    """
    stat = Path(path).stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _digests:
        digest = hashlib.sha1(usedforsecurity=False)  # an identity, not a signature
        with open(path, "rb") as f:  # in chunks (hashlib.file_digest needs Python 3.11)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _digests[memo] = digest.hexdigest()
    return _digests[memo]


def cache_folder(max_side: int) -> Path:
    """The folder of the per-image selective-search caches of one recipe and ``max_side``."""
    name = f"{SS_CACHE_TAG}-{PROPOSALS_VERSION}" + (f"-max{max_side}" if max_side > 0 else "")
    return cache_dir() / "proposals" / name


def cache_path(digest: str, max_boxes: int, max_side: int) -> Path:
    """``<folder>/<digest[:2]>/<digest>-<cap>.npy``: one small file per image and cap (the
    two-letter shards keep a folder's listing short on a large data set)."""
    return cache_folder(max_side) / digest[:2] / f"{digest}-{max_boxes}.npy"


def _cached_caps(digest: str, max_side: int) -> list[int]:
    """The caps under which the boxes of the image ``digest`` are cached at this ``max_side``."""
    caps = []
    for path in cache_path(digest, 0, max_side).parent.glob(f"{digest}-*.npy"):
        cap = path.stem.rsplit("-", 1)[1]
        if cap.isdigit():
            caps.append(int(cap))
    return caps


def _load_one(path: Path) -> np.ndarray:
    """One cache file's boxes; raises on anything but an (R, 4) float32 array."""
    boxes = np.load(path, allow_pickle=False)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype != np.float32:
        raise ValueError(f"holds a {boxes.dtype} array of shape {boxes.shape}, not (R, 4) float32")
    return boxes


def cached_boxes(digest: str, max_boxes: int, max_side: int, bad: list[str]) -> np.ndarray | None:
    """The image's cached boxes under ``max_boxes``, or the first ``max_boxes`` of a larger cap's
    (the cap is the last step of :func:`clean_boxes`, so they are exactly what a search with this
    cap gives); None when neither is cached. A file that does not load is noted in ``bad``."""
    caps = (
        [max_boxes] if max_boxes == 0 else [max_boxes, *_larger_caps(digest, max_boxes, max_side)]
    )
    for cap in caps:
        path = cache_path(digest, cap, max_side)
        if not path.is_file():
            continue
        try:
            return _load_one(path)[: max_boxes or None]
        except Exception as exc:  # noqa: BLE001 - truncated, not .npy, wrong array: recompute
            bad.append(f"{path} ({exc})")
    return None


def _larger_caps(digest: str, max_boxes: int, max_side: int) -> list[int]:
    """Cached caps that hold at least the first ``max_boxes`` boxes: larger ones, smallest first,
    then 0 (no cap)."""
    caps = [c for c in _cached_caps(digest, max_side) if c == 0 or c > max_boxes]
    return sorted(caps, key=lambda c: c or 10**18)


def save_boxes(path: Path, boxes: np.ndarray) -> None:
    """Write one image's cache file atomically (``np.save`` on a file object: a name would get
    ``.npy`` appended)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(boxes, dtype=np.float32), allow_pickle=False)

    atomic_write(path, write)
