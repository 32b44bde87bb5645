"""RoI target assignment: each RoI's label, max IoU with ground truth and box targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou

from ohemcli.boxes import BoxNorm, encode_deltas

# A proposal whose intersection with a crowd region covers more than this share of the proposal's
# own area (IoF, intersection over foreground) is ignored in training. mmdetection's
# MaxIoUAssigner ignores candidates the same way (``ignore_iof_thr``, IoF with respect to the
# candidate), and COCOeval matches detections to crowd regions by the same measure (its "IoU"
# with a crowd box is intersection over the detection's area), so 0.5 ignores in training what
# COCO's AP50 ignores in evaluation.
CROWD_IOF = 0.5


def outside_crowd(rois: Tensor, crowd: Tensor, thresh: float = CROWD_IOF) -> Tensor:
    """(R,) bool: RoIs whose IoF with every crowd box is at most ``thresh``.

    IoF = area(RoI ∩ crowd) / area(RoI), in continuous coordinates as ``box_iou``.
    """
    if crowd.numel() == 0 or rois.numel() == 0:
        return torch.ones(rois.shape[0], dtype=torch.bool, device=rois.device)
    lt = torch.max(rois[:, None, :2], crowd[None, :, :2])
    rb = torch.min(rois[:, None, 2:], crowd[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)  # (R, C)
    iof = inter / box_area(rois).clamp(min=1e-6)[:, None]
    return iof.max(dim=1).values <= thresh


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
    num, device = rois.shape[0], rois.device  # faster-rcnn assigns on the GPU, in the step
    if gt_boxes.numel() == 0:
        return RoITargets(
            labels=torch.zeros(num, dtype=torch.int64, device=device),
            max_iou=torch.zeros(num, device=device),
            box_targets=torch.zeros(num, 4, device=device),
            gt_index=torch.full((num,), -1, dtype=torch.int64, device=device),
        )
    iou = box_iou(rois, gt_boxes)
    max_iou, argmax = iou.max(dim=1)
    fg = max_iou >= fg_thresh
    labels = torch.where(fg, gt_labels[argmax], torch.zeros_like(argmax))
    box_targets = torch.zeros(num, 4, device=device)
    if fg.any():
        deltas = encode_deltas(rois[fg], gt_boxes[argmax[fg]])
        if flip:
            deltas[:, 0] = -deltas[:, 0]
        norm = norm or BoxNorm.fixed(int(gt_labels.max()))
        box_targets[fg] = norm.normalise(deltas, labels[fg])
    return RoITargets(labels=labels, max_iou=max_iou, box_targets=box_targets, gt_index=argmax)
