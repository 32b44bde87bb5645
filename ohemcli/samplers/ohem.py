"""Online Hard Example Mining (Shrivastava, Gupta, Girshick, CVPR 2016).

Every RoI of the image (background is IoU in [0, 0.5): no bg_lo, no fg/bg ratio) is scored by its
loss from the trainer's read-only pass; NMS over RoIs scored by loss removes near-duplicates, so
that
one hard region does not fill the batch; the top B/N that remain are trained on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.ops import nms

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.model.fast_rcnn import RoILosses
from ohemcli.samplers.base import ImageRoIs, MinedNegatives

RANKING_LOSSES = ("cls+box", "cls")


def hardest_rois(boxes: Tensor, losses: Tensor, num: int, nms_iou: float | None) -> Tensor:
    """Positions of the ``num`` highest-loss RoIs, after NMS at ``nms_iou`` (None: no NMS).

    Ties in loss keep the lower position first (stable sort), so the choice is deterministic.
    """
    losses = losses.float()
    if nms_iou is None:
        order = torch.sort(losses, descending=True, stable=True).indices
        return order[:num]
    # torchvision's nms returns kept positions sorted by decreasing score.
    return nms(boxes.float(), losses, nms_iou)[:num]


class OHEMSampler:
    """The top B/N RoIs by loss, after loss-scored NMS."""

    needs_roi_losses = True
    needs_mining = False

    def __init__(self, cfg: SamplerConfig) -> None:
        if cfg.ohem_loss not in RANKING_LOSSES:
            raise UserError(
                f"--ohem-loss: unknown '{cfg.ohem_loss}' (choose {' or '.join(RANKING_LOSSES)})"
            )
        self.cfg = cfg

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """Positions of the hardest RoIs of the image."""
        if roi_losses is None:
            raise ValueError("ohem needs the per-RoI losses of the read-only pass")
        score = roi_losses.cls if self.cfg.ohem_loss == "cls" else roi_losses.total
        nms_iou = self.cfg.ohem_nms_iou if self.cfg.ohem_nms else None
        return hardest_rois(rois.boxes, score, num, nms_iou)

    def after_epoch(self, mined: MinedNegatives | None) -> None:
        """Nothing to refresh."""

    def state_dict(self) -> dict[str, Any]:
        """No state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state."""
