"""What every split of a data set offers, whatever its format: :class:`Dataset`.

``data.voc.VOCDataset`` and ``data.coco.dataset.COCODataset`` both satisfy it, so that batching,
proposals, evaluation and the trainer take either (type hints say ``Dataset``, not a format).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ohemcli.data.voc import ImageRecord


class Dataset(Protocol):
    """One split of a data set: its images' records, in file order, and its classes."""

    root: Path  # the data root (VOC) or the split's image folder (COCO)
    split: str  # the split's name
    num_objects: int  # every annotated object, degenerate ones included
    unknown_objects: int  # objects of a class outside ``classes``, left out
    dropped: list[str]  # one message per degenerate box that was left out

    @property
    def classes(self) -> tuple[str, ...]:
        """Names of labels 1..K."""
        ...

    @property
    def records(self) -> Sequence[ImageRecord]:
        """Every image of the split with its ground truth, in file order."""
        ...

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        ...

    @property
    def listing(self) -> Path:
        """The file that lists this split's images."""
        ...

    def fingerprint(self) -> str:
        """A content hash of the split (what makes two runs' data the same)."""
        ...

    def __len__(self) -> int:
        """Number of images."""
        ...

    def __getitem__(self, i: int) -> ImageRecord:
        """The record of image ``i``."""
        ...
