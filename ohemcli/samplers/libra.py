"""Libra R-CNN's sampling (Pang et al., CVPR 2019), as its authors' code base runs it.

mmdetection's ``CombinedSampler`` with ``InstanceBalancedPosSampler`` and
``IoUBalancedNegSampler(floor_thr=-1, floor_fraction=0, num_bins=3)``:

- positives: a quota of ``int(num * 0.25)``. When there are more, each ground-truth box gets
  ``int(round(quota / boxes) + 1)`` of its RoIs (Python's round: halves to even), at random;
  a shortfall is filled at random from the other positives, an excess cut at random;
- negatives (every label-0 RoI: IoU in [0, 0.5)): ``num`` less the positives. When there are
  more, the IoU range ``[0, top)`` is cut into ``num_bins`` equal bins; each gives
  ``int(need / num_bins)`` at random (all of it when it has fewer), and the rest is filled at
  random from the negatives not yet taken.
- the floor: ``IoUBalancedNegSampler`` starts at ``floor_thr = -1`` and sets it to 0 on its
  first call that has more negatives than it needs. From then on the bins draw only from
  negatives with IoU > 0; those with IoU exactly 0 fill what the bins leave short, as a last
  resort. The first such call draws from every negative. The floor is saved in the checkpoint.

The reference's quirk is the default: ``top`` is the highest IoU over *all* the image's RoIs,
ground-truth boxes included (1.0 when it has any), so with negatives below 0.5 the top bin
[2/3, 1) is empty and its share is drawn at random. ``bins="paper"`` cuts [0, fg_thresh) evenly
instead, as the paper describes.

Of Libra R-CNN (Pang et al. 2019) only the IoU-balanced sampling is here: its balanced L1 loss
and balanced feature pyramid are not implemented (the box loss is smooth L1 and there is no
FPN), so a libra row measures the sampler, not the whole detector.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ohemcli.errors import UserError
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, MinedNegatives, SamplerBase, random_subset

BIN_MODES = ("reference", "paper")


def _without(candidates: Tensor, taken: Tensor) -> Tensor:
    """``candidates`` less ``taken`` (1-D positions), in their order."""
    return candidates[~torch.isin(candidates, taken)]


def instance_balanced_pos(fg: Tensor, gt_index: Tensor, num: int, gen: torch.Generator) -> Tensor:
    """At most ``num`` of the positives ``fg``, balanced over their ground-truth boxes."""
    if fg.numel() <= num:
        return fg
    boxes = gt_index[fg].unique()
    per_box = int(round(num / float(len(boxes))) + 1)
    taken = torch.cat([random_subset(fg[gt_index[fg] == b], per_box, gen) for b in boxes])
    if taken.numel() < num:
        extra = random_subset(_without(fg, taken), num - taken.numel(), gen)
        return torch.cat([taken, extra])
    return random_subset(taken, num, gen)


def iou_balanced_neg(
    bg: Tensor, max_iou: Tensor, num: int, top: float, num_bins: int, gen: torch.Generator
) -> Tensor:
    """At most ``num`` of the negatives ``bg``, evenly from ``num_bins`` IoU bins of [0, top)."""
    if bg.numel() <= num:
        return bg
    if num_bins < 2:
        return random_subset(bg, num, gen)
    width, per_bin = top / num_bins, int(num / num_bins)
    parts = []
    for i in range(num_bins):
        iou = max_iou[bg]
        in_bin = bg[(iou >= i * width) & (iou < (i + 1) * width)]
        parts.append(random_subset(in_bin, per_bin, gen))
    taken = torch.cat(parts)
    if taken.numel() < num:
        taken = torch.cat([taken, random_subset(_without(bg, taken), num - taken.numel(), gen)])
    return taken


def floored_neg(
    bg: Tensor,
    max_iou: Tensor,
    num: int,
    top: float,
    num_bins: int,
    floor_thr: float,
    gen: torch.Generator,
) -> Tensor:
    """At most ``num`` of the negatives ``bg`` as ``IoUBalancedNegSampler._sample_neg`` takes
    them with ``floor_fraction = 0``: ``floor_thr`` -1 puts every negative in the IoU-balanced
    draw; 0 keeps the IoU-0 negatives out of it (drawn at random for what it leaves short);
    above 0, those under ``floor_thr``."""
    iou = max_iou[bg]
    if floor_thr < 0:
        floor, balanced = bg[:0], bg
    elif floor_thr == 0:
        floor, balanced = bg[iou == 0], bg[iou > 0]
    else:
        floor, balanced = bg[iou < floor_thr], bg[iou >= floor_thr]
    taken = iou_balanced_neg(balanced, max_iou, num, top, num_bins, gen)
    taken = torch.cat([random_subset(floor, num - taken.numel(), gen), taken])
    if taken.numel() < num:
        taken = torch.cat([taken, random_subset(_without(bg, taken), num - taken.numel(), gen)])
    return taken


class LibraSampler(SamplerBase):
    """Instance-balanced positives and IoU-balanced negatives."""

    needs_roi_losses = False
    needs_mining = False

    def __init__(
        self,
        fg_fraction: float = 0.25,
        fg_thresh: float = 0.5,
        num_bins: int = 3,
        bins: str = "reference",
    ) -> None:
        """``bins``: "reference" (top edge = highest IoU of any RoI) or "paper" ([0, fg_thresh))."""
        if bins not in BIN_MODES:
            raise UserError(f"sampler.libra_bins: unknown '{bins}' (choose reference or paper)")
        self.fg_fraction, self.fg_thresh = fg_fraction, fg_thresh
        self.num_bins, self.bins = num_bins, bins
        self.floor_thr = -1.0  # the reference's initial floor_thr; 0 after the first draw

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """Positions of the chosen RoIs, positives first."""
        labels, max_iou = rois.labels, rois.max_iou
        gt_index = rois.gt_index if rois.gt_index is not None else torch.zeros_like(labels)
        fg = torch.nonzero(labels > 0).flatten()
        bg = torch.nonzero(labels == 0).flatten()
        chosen_fg = instance_balanced_pos(fg, gt_index, int(num * self.fg_fraction), gen)
        if self.bins == "paper":
            top = self.fg_thresh
        else:
            top = float(max_iou.max().item()) if max_iou.numel() else 0.0
        need = num - chosen_fg.numel()
        if bg.numel() <= need:  # the reference returns every negative before its floor logic
            return torch.cat([chosen_fg, bg])
        chosen_bg = floored_neg(bg, max_iou, need, top, self.num_bins, self.floor_thr, gen)
        if self.floor_thr < 0:
            self.floor_thr = 0.0  # as the reference, after its first draw ("for sampling interval")
        return torch.cat([chosen_fg, chosen_bg])

    def after_mining(self, mined: MinedNegatives | None) -> None:
        """Nothing to refresh."""

    def state_dict(self) -> dict[str, Any]:
        """The floor (-1 before the first draw, then 0)."""
        return {"floor_thr": self.floor_thr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the floor; a checkpoint written before it was saved starts at -1."""
        self.floor_thr = float(state.get("floor_thr", -1.0))
