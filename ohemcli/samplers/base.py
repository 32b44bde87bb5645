"""The RoI sampler protocol: a sampler sees tensors and says which RoIs to train on.

Samplers never hold the model. The trainer runs the read-only loss pass when a sampler sets
``needs_roi_losses`` and the hnm mining pass (``engine.mining``), and hands the results over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ohemcli.model.fast_rcnn import RoILosses


@dataclass
class ImageRoIs:
    """Every candidate RoI of one training image, with its targets."""

    boxes: Tensor  # (R, 4) in network-input coordinates
    labels: Tensor  # (R,) int64, 0 = background
    max_iou: Tensor  # (R,) max IoU with the training ground truth
    box_targets: Tensor  # (R, 4) normalised deltas
    image_id: str


@dataclass
class MinedNegatives:
    """hnm's false-positive pool: per image, RoI positions (in its RoI list) and scores."""

    per_image: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of pooled RoIs over all images."""
        return sum(len(idx) for idx, _ in self.per_image.values())


class RoISampler(Protocol):
    """What the trainer needs from a sampler."""

    needs_roi_losses: bool  # the trainer runs the read-only pass and passes roi_losses when True
    needs_mining: bool  # the trainer runs mining passes and calls after_epoch with their result

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """Positions (into ``rois``) of at most ``num`` RoIs to train on."""
        ...

    def after_epoch(self, mined: MinedNegatives | None) -> None:
        """Take the result of a mining pass (hnm); other samplers ignore it."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values to save in the checkpoint."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        ...


def random_subset(candidates: Tensor, num: int, gen: torch.Generator) -> Tensor:
    """At most ``num`` of ``candidates`` (1-D positions), uniformly, deterministic for ``gen``."""
    if num <= 0 or candidates.numel() == 0:
        return candidates[:0]
    order = torch.randperm(candidates.numel(), generator=gen)[:num]
    return candidates[order.to(candidates.device)]
