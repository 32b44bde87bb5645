"""The per-RoI loss that both ranks RoIs (ohem's read-only pass) and trains them."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class RoILosses(NamedTuple):
    """Per-RoI loss terms, no reduction."""

    cls: Tensor  # (R,) cross-entropy
    box: Tensor  # (R,) smooth L1 over the 4 deltas of the ground-truth class; 0 for background

    @property
    def total(self) -> Tensor:
        """Classification plus box loss of each RoI."""
        return self.cls + self.box


def per_roi_loss(
    cls_logits: Tensor, box_deltas: Tensor, labels: Tensor, box_targets: Tensor
) -> RoILosses:
    """Fast R-CNN's multi-task loss for each RoI separately.

    ``cls_logits`` (R, K+1); ``box_deltas`` (R, 4(K+1)) class-specific; ``labels`` (R,) with 0 for
    background; ``box_targets`` (R, 4) normalised deltas. The box term sums smooth L1 (beta 1) over
    the 4 deltas of the RoI's ground-truth class and is zero for background.
    """
    loss_cls = F.cross_entropy(cls_logits.float(), labels, reduction="none")
    deltas = box_deltas.float().view(len(labels), box_deltas.shape[1] // 4, 4)  # ok for R = 0
    chosen = deltas[torch.arange(len(labels), device=labels.device), labels]
    loss_box = F.smooth_l1_loss(chosen, box_targets, beta=1.0, reduction="none").sum(dim=1)
    loss_box = loss_box * (labels > 0).to(loss_box.dtype)
    return RoILosses(loss_cls, loss_box)
