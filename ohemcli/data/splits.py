"""A split of a data set with its proposals, loaded as every run loads it.

``--data`` names the built-in synthetic set, a VOC root or a COCO set (three layouts, see
:mod:`ohemcli.data.coco.layout`); :func:`open_dataset` picks the reader by what it finds there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ohemcli.config import ExperimentConfig
from ohemcli.data.coco.dataset import COCODataset
from ohemcli.data.coco.layout import find_layout
from ohemcli.data.dataset import Dataset
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError, quote

__all__ = ["Dataset", "open_dataset"]  # Dataset: callers of this module name it from here


def data_root(data: str) -> Path:
    """``synth`` -> the built-in synthetic set (generated on first use); otherwise a VOC root."""
    from ohemcli.data.synthetic.generate import resolve_data_root

    return resolve_data_root(data)


def open_dataset(
    data: str,
    split: str,
    classes: Sequence[str] | None = None,
    *,
    images: str | None = None,
    limit: int = 0,
    limit_option: str = "limit",
    skip_empty: bool = False,
) -> Dataset:
    """One split of the data set at ``data``: a COCO set when one is found there, else a VOC root.

    ``skip_empty`` (COCO only) leaves out images with no usable box: training splits do, unless
    ``data.keep_empty``; test splits never do.
    """
    layout = None if data == "synth" else find_layout(data, images)
    if layout is not None:
        return COCODataset(layout, split, classes, limit, limit_option, skip_empty)
    return VOCDataset(data_root(data), split, classes, limit=limit, limit_option=limit_option)


@dataclass
class SplitData:
    """One split of the data set with its proposals."""

    dataset: Dataset
    # Each image's fixed proposals; None under faster-rcnn, whose RPN proposes them in the step
    proposals: dict[str, np.ndarray] | None


def open_split(cfg: ExperimentConfig, split: str, classes: Sequence[str] | None = None) -> Dataset:
    """The split's images and annotations, without proposals (cheap: annotations and image
    headers). ``classes`` defaults to ``data.classes`` (None: found in the data)."""
    d = cfg.data
    training = split == d.train_split
    return open_dataset(
        d.root,
        split,
        classes if classes is not None else d.classes,
        images=d.images,
        limit=d.train_images if training else 0,
        limit_option="data.train_images",
        skip_empty=training and not d.keep_empty,
    )


def check_scorable(dataset: Dataset) -> None:
    """Refuse a test split with no object to score: every AP, and so the mAP, would be undefined.

    Difficult objects do not count (VOC scores neither hits nor misses on them), nor objects of
    classes the model is not trained on.
    """
    if not any((~r.difficult).any() for r in dataset.records):
        raise UserError(
            f"{dataset.listing}: split '{dataset.split}' ({len(dataset)} images) has no object "
            f"of the classes {quote(', '.join(dataset.classes))} that is not difficult, so its "
            "mAP is undefined; choose another data.test_split"
        )


def open_splits(cfg: ExperimentConfig) -> tuple[Dataset, Dataset]:
    """The train and test splits without proposals; a test split with nothing to score is
    refused (:func:`check_scorable`). Cheap enough to run before any other data work."""
    train = open_split(cfg, cfg.data.train_split)
    test = open_split(cfg, cfg.data.test_split, train.classes)
    check_scorable(test)
    return train, test


def load_split(
    cfg: ExperimentConfig,
    split: str,
    show_progress: bool = True,
    dataset: Dataset | None = None,
) -> SplitData:
    """The split's images, annotations and (cached) proposals; ``dataset``, when given, is the
    split as :func:`open_split` read it. Under faster-rcnn no proposal is computed or read:
    its RPN proposes them (a new data set costs no selective search)."""
    from ohemcli.data.proposals.load import load_proposals, resolve_source

    d = cfg.data
    dataset = dataset if dataset is not None else open_split(cfg, split)
    if cfg.model.detector == "faster-rcnn":
        return SplitData(dataset, None)
    proposals = load_proposals(
        dataset,
        # "release", {split} placeholders
        source=resolve_source(d.proposals, dataset.root, dataset.split),
        max_boxes=d.max_proposals,
        workers=None,
        show_progress=show_progress,
        max_side=d.ss_max_side,
    )
    return SplitData(dataset, proposals)


def prepare_data(cfg: ExperimentConfig, show_progress: bool = True) -> None:
    """Make the data both splits need (the synthetic set, proposals) and leave it in the cache.

    Jobs launched side by side on a fresh cache would otherwise each generate the synthetic set
    and run selective search on the same images at once, competing for the same cores.
    """
    for split in dict.fromkeys((cfg.data.train_split, cfg.data.test_split)):
        load_split(cfg, split, show_progress)
