"""A data set's fingerprint: what a run trained and was tested on, in a few short digests.

A run is identified by what it is, not by its folder's name; the data is part of that. The
fingerprint holds, per split, one digest of its image list and one of its annotations as read
(boxes, labels, difficult flags, class names), so that a refusal can say *what* changed: an edit
of a box changes the annotations, an added image the list. Whitespace or attribute order in an
XML file changes neither, since the parsed records are hashed, not the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ohemcli.errors import UserError

FINGERPRINT_PARTS = ("images", "annotations")


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        # The length first: two lists that join to the same bytes still differ.
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def split_fingerprint(dataset: Any) -> dict[str, str]:
    """``{"images": ..., "annotations": ...}`` of one split (a VOC or COCO dataset)."""
    images = [f"{r.image_id}\0{r.image_path.name}".encode() for r in dataset.records]
    notes = ["\0".join(dataset.classes).encode()]
    for r in dataset.records:
        notes.append(str(r.image_id).encode())
        notes.append(f"{r.width}x{r.height}".encode())
        for array, dtype in ((r.boxes, np.float32), (r.labels, np.int64), (r.difficult, bool)):
            notes.append(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return {"images": _digest(images), "annotations": _digest(notes)}


def data_fingerprint(train: Any, test: Any) -> dict[str, dict[str, str]]:
    """The fingerprint of a run's data: ``{"train": split_fingerprint, "test": ...}``."""
    return {"train": split_fingerprint(train), "test": split_fingerprint(test)}


def require_same_data(
    saved: Any, now: Mapping[str, Mapping[str, str]], where: object, since: str, advice: str
) -> None:
    """Refuse, in one line naming ``where`` and what changed ``since`` (:func:`fingerprint_change`),
    data that is no longer what a record was made from; ``advice`` ends the line."""
    change = fingerprint_change(saved, now)
    if change is not None:
        raise UserError(f"{where}: {change} changed since {since}; {advice}")


def fingerprint_change(saved: Any, now: Mapping[str, Mapping[str, str]]) -> str | None:
    """What differs between a recorded fingerprint and today's, in words (``the annotations of
    the test split``), or None when they agree. A record without a fingerprint (a folder from
    before it was kept) agrees with anything."""
    if not isinstance(saved, dict) or not saved:
        return None
    changed = [
        f"the {'image list' if part == 'images' else part} of the {role} split"
        for role in ("train", "test")
        for part in FINGERPRINT_PARTS
        if not isinstance(saved.get(role), dict) or saved[role].get(part) != now[role][part]
    ]
    return " and ".join(changed) or None
