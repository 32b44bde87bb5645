"""What a run checks before any work: the cache folder, the device, the model config and the
data's splits, so that a mistake is one line in seconds, not after minutes of selective search
or training. ``engine.train`` runs it for every run, ``launch.compare`` before it writes a thing.
"""

from __future__ import annotations

from ohemcli.config import ExperimentConfig
from ohemcli.data.dataset import Dataset
from ohemcli.data.splits import open_splits
from ohemcli.device import resolve_device
from ohemcli.errors import UserError
from ohemcli.fileio import cache_dir
from ohemcli.model.backbones import check_backbone


def check_setup(cfg: ExperimentConfig, device: bool = True) -> None:
    """Check what needs no data: ``OHEM_CACHE`` can be written (the synthetic set and the
    proposals go there), the device exists (``device``; a Slurm login node may have no GPU of its
    own), and the backbone builds with its weights file and frozen layers."""
    cache_dir()
    if device and resolve_device(cfg.train.device).type != "cuda" and cfg.train.amp:
        raise UserError("--amp: mixed precision needs --device cuda")
    check_backbone(cfg.model)


def preflight(cfg: ExperimentConfig, device: bool = True) -> tuple[Dataset, Dataset]:
    """:func:`check_setup`, then the train and test splits, read without proposals (a test split
    with no object to score is refused). Returns both splits, for the run to reuse."""
    check_setup(cfg, device)
    return open_splits(cfg)
