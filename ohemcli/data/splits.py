"""A split of a data set with its proposals, loaded as every run loads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ohemcli.config import ExperimentConfig
from ohemcli.data.voc import VOCDataset


def data_root(data: str) -> Path:
    """``synth`` -> the built-in synthetic set (generated on first use); otherwise a VOC root."""
    from ohemcli.data.synthetic import resolve_data_root

    return resolve_data_root(data)


@dataclass
class SplitData:
    """One split of the data set with its proposals."""

    dataset: VOCDataset
    proposals: dict[str, np.ndarray]


def load_split(cfg: ExperimentConfig, split: str, show_progress: bool = True) -> SplitData:
    """The split's images, annotations and (cached) proposals."""
    from ohemcli.data.proposals import load_proposals, resolve_source

    d = cfg.data
    root = data_root(d.root)
    limit = d.train_images if split == d.train_split else 0
    dataset = VOCDataset(root, split, d.classes, limit=limit, limit_option="data.train_images")
    proposals = load_proposals(
        dataset,
        source=resolve_source(d.proposals, root, split),  # "release", {split} placeholders
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
