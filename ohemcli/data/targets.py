"""RoI target assignment: each RoI's label, max IoU with ground truth and box targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

from ohemcli.boxes import BoxNorm, encode_deltas


@dataclass
class RoITargets:
    """Targets of every RoI of one image. ``labels`` is 0 for background."""

    labels: Tensor  # (R,) int64
    max_iou: Tensor  # (R,) float32, 0 where the image has no ground truth
    box_targets: Tensor  # (R, 4) float32, normalised deltas; zero for background
    gt_index: Tensor | None = None  # (R,) int64, ground-truth box of highest IoU; -1 when none


def assign_targets(
    rois: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    fg_thresh: float = 0.5,
    norm: BoxNorm | None = None,
    flip: bool = False,
) -> RoITargets:
    """Label each RoI by the ground-truth box it overlaps most.

    A RoI whose max IoU is at least ``fg_thresh`` takes that box's class and regression target;
    every other RoI is background (label 0) with a zero target. Targets are normalised by ``norm``
    (None: the fixed stds); ``flip`` gives the targets of the mirrored image (dx changes sign,
    before normalising: the means need not be symmetric). Which background RoIs are usable
    (Fast R-CNN's IoU in [0.1, 0.5) or OHEM's [0, 0.5)) is the sampler's decision, made from
    ``max_iou``.
    """
    num = rois.shape[0]
    if gt_boxes.numel() == 0:
        return RoITargets(
            labels=torch.zeros(num, dtype=torch.int64),
            max_iou=torch.zeros(num),
            box_targets=torch.zeros(num, 4),
            gt_index=torch.full((num,), -1, dtype=torch.int64),
        )
    iou = box_iou(rois, gt_boxes)
    max_iou, argmax = iou.max(dim=1)
    fg = max_iou >= fg_thresh
    labels = torch.where(fg, gt_labels[argmax], torch.zeros_like(argmax))
    box_targets = torch.zeros(num, 4)
    if fg.any():
        deltas = encode_deltas(rois[fg], gt_boxes[argmax[fg]])
        if flip:
            deltas[:, 0] = -deltas[:, 0]
        norm = norm or BoxNorm.fixed(int(gt_labels.max()))
        box_targets[fg] = norm.normalise(deltas, labels[fg])
    return RoITargets(labels=labels, max_iou=max_iou, box_targets=box_targets, gt_index=argmax)
