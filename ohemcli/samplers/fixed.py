"""Fast R-CNN's fixed-ratio heuristic: 25% foreground, background from IoU in [0.1, 0.5)."""

from __future__ import annotations

import torch
from torch import Tensor

from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, Stateless, random_subset


def sample_fg_bg(
    labels: Tensor,
    max_iou: Tensor,
    num: int,
    fg_fraction: float,
    bg_lo: float,
    bg_hi: float,
    gen: torch.Generator,
    preferred_bg: Tensor | None = None,
) -> Tensor:
    """Pick at most ``num`` RoIs with a target share of foreground, uniformly at random.

    Args:
        labels: (R,) class of each RoI; 0 is background, 1..K foreground (max IoU >= fg threshold).
        max_iou: (R,) each RoI's max IoU with the training ground truth.
        num: the number of RoIs wanted for this image (B / N).
        fg_fraction: the wanted share of foreground; ``round(num * fg_fraction)`` of them at most.
        bg_lo, bg_hi: background RoIs are those with label 0 and ``bg_lo <= max_iou < bg_hi``.
        gen: the random generator; the same state gives the same picks.
        preferred_bg: positions of background RoIs to take first (hnm's pool), before random
            background fills the rest.

    Returns:
        Positions of the chosen RoIs, foreground first. When foreground is short, every foreground
        RoI is taken and background fills the rest; when background is short too, fewer than
        ``num`` are returned (as Fast R-CNN does).
    """
    fg = torch.nonzero(labels > 0).flatten()
    is_bg = (labels == 0) & (max_iou >= bg_lo) & (max_iou < bg_hi)
    num_fg = min(int(round(num * fg_fraction)), fg.numel())
    chosen_fg = random_subset(fg, num_fg, gen)
    num_bg = num - chosen_fg.numel()
    chosen_bg = chosen_fg[:0]
    if preferred_bg is not None and preferred_bg.numel() > 0:
        preferred_bg = preferred_bg[labels[preferred_bg] == 0]
        chosen_bg = random_subset(preferred_bg, num_bg, gen)
        is_bg[chosen_bg] = False
    rest = torch.nonzero(is_bg).flatten()
    chosen_bg = torch.cat([chosen_bg, random_subset(rest, num_bg - chosen_bg.numel(), gen)])
    return torch.cat([chosen_fg, chosen_bg])


class FixedSampler(Stateless):
    """B/N RoIs per image, 25% foreground at IoU >= 0.5, background from IoU in [0.1, 0.5)."""

    needs_roi_losses = False
    needs_mining = False

    def __init__(
        self, fg_fraction: float = 0.25, fg_thresh: float = 0.5, bg_lo: float = 0.1
    ) -> None:
        """``fg_fraction``: share of foreground; background is label 0 with IoU in
        [``bg_lo``, ``fg_thresh``)."""
        self.fg_fraction, self.fg_thresh, self.bg_lo = fg_fraction, fg_thresh, bg_lo

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """Positions of the chosen RoIs (see :func:`sample_fg_bg`)."""
        return sample_fg_bg(
            rois.labels, rois.max_iou, num, self.fg_fraction, self.bg_lo, self.fg_thresh, gen
        )
