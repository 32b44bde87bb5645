"""mmdetection's ``OHEMSampler`` (``mmdet/models/task_modules/samplers/ohem_sampler.py``).

The variant most OHEM users run, not the paper's algorithm: the quota of positives is kept
(``int(num * 0.25)``, rounded down as mmdetection's ``BaseSampler.sample`` does), and the
read-only pass ranks by classification loss only, with no NMS:

- positives (label > 0): all of them when there are at most the quota, else the quota's worth of
  highest classification loss;
- negatives (every label-0 RoI, IoU in [0, 0.5): mmdetection's assigner has no floor): ``num``
  less the positives taken, all of them when there are no more, else the highest loss.

The ground-truth boxes are among the candidates (mmdetection's ``add_gt_as_proposals=True``; our
RoIs always end with them). Ties keep the lower position first (a stable sort), where
mmdetection's ``topk`` leaves the order unspecified.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, Stateless


def top_loss(candidates: Tensor, loss: Tensor, num: int) -> Tensor:
    """``candidates`` themselves when at most ``num``, else the ``num`` of highest ``loss``."""
    if candidates.numel() <= num:
        return candidates
    order = torch.sort(loss[candidates].float(), descending=True, stable=True).indices
    return candidates[order[:num]]


class MMDetOHEMSampler(Stateless):
    """Top-k by classification loss within the positive quota and within the negatives."""

    needs_roi_losses = True
    needs_mining = False

    def __init__(self, fg_fraction: float = 0.25) -> None:
        """``fg_fraction``: the positives' share of ``num`` (rounded down)."""
        self.fg_fraction = fg_fraction

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """Positions of the chosen RoIs, positives first."""
        if roi_losses is None:
            raise ValueError("ohem-mmdet needs the per-RoI losses of the read-only pass")
        fg = torch.nonzero(rois.labels > 0).flatten()
        bg = torch.nonzero(rois.labels == 0).flatten()
        chosen_fg = top_loss(fg, roi_losses.cls, int(num * self.fg_fraction))
        chosen_bg = top_loss(bg, roi_losses.cls, num - chosen_fg.numel())
        return torch.cat([chosen_fg, chosen_bg])
