"""The candidate RoIs of a training step, in the samplers' terms, from either proposal source.

Under ``fast-rcnn`` the batch already holds them: each image's fixed proposals and ground truth,
scored by the data loader. Under ``faster-rcnn`` the RPN proposes them from the step's feature
map; this module scores them against the image's ground truth here, on the features' device, as
py-faster-rcnn's proposal-target layer does, and hands the samplers the same ``ImageRoIs``. A
sampler, a plugin's too, cannot tell the two sources apart.

Each faster-rcnn image's RoIs are, in order: the RPN's proposals (best first, less those inside
a crowd region), its training ground truth (as every Fast R-CNN image's are), then any boxes
``extra_boxes`` adds for it (hnm's pooled false positives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ohemcli.boxes import BoxNorm
from ohemcli.data.batching import Batch, ImageSample, flip_boxes
from ohemcli.data.targets import assign_targets, outside_crowd
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.samplers.base import ImageRoIs

# Boxes of an image in its original, unmirrored coordinates (None: nothing to add).
ExtraBoxes = Callable[[str], Tensor | None]


@dataclass(frozen=True)
class CandidateSource:
    """How a faster-rcnn step scores its proposals (fast-rcnn's come scored)."""

    fg_thresh: float = 0.5  # sampler.fg_thresh: a proposal at this IoU or above is foreground
    extra_boxes: ExtraBoxes | None = None  # hnm's pool (samplers.hnm.HNMSampler.pooled_boxes)


def batch_image_rois(batch: Batch) -> list[ImageRoIs]:
    """The candidate RoIs the data loader scored for each image of ``batch`` (fast-rcnn)."""
    rois = []
    for s in batch.samples:
        if s.labels is None or s.max_iou is None or s.box_targets is None:
            raise ValueError(f"{s.image_id}: a training sample needs labels, IoUs and targets")
        rois.append(ImageRoIs(s.rois, s.labels, s.max_iou, s.box_targets, s.image_id, s.gt_index))
    return rois


def _in_input_coordinates(sample: ImageSample, boxes: Tensor) -> Tensor:
    """Boxes given in the original image's coordinates, mirrored and resized as the sample is."""
    if sample.flipped:
        boxes = flip_boxes(boxes, sample.width)
    return boxes * sample.factor


def scored_proposals(
    sample: ImageSample,
    proposals: Tensor,
    fg_thresh: float,
    norm: BoxNorm,
    extra: Tensor | None = None,
) -> ImageRoIs:
    """One image's RoIs (see the module docstring) with their labels, IoUs and box targets."""
    if sample.gt_boxes is None or sample.gt_labels is None:
        raise ValueError(f"{sample.image_id}: a training sample needs its ground truth")
    gt_boxes = sample.gt_boxes.to(proposals.device)
    crowd = sample.crowd_boxes
    if crowd is not None and crowd.numel():
        proposals = proposals[outside_crowd(proposals, crowd.to(proposals.device))]
    parts = [proposals, gt_boxes]
    if extra is not None and extra.numel():
        parts.append(_in_input_coordinates(sample, extra.to(proposals.device)))
    boxes = torch.cat([p.float() for p in parts])
    # Already mirrored: the deltas of mirrored boxes are the mirrored deltas (flip=False).
    targets = assign_targets(boxes, gt_boxes, sample.gt_labels.to(boxes.device), fg_thresh, norm)
    return ImageRoIs(
        boxes, targets.labels, targets.max_iou, targets.box_targets, sample.image_id,
        targets.gt_index,
    )  # fmt: skip


def candidate_rois(
    model: FastRCNN, features: Tensor, batch: Batch, source: CandidateSource | None = None
) -> tuple[list[ImageRoIs], dict[str, Tensor]]:
    """Each image's candidate RoIs and the RPN's losses (empty under fast-rcnn)."""
    if model.rpn is None:
        return batch_image_rois(batch), {}
    source = source or CandidateSource()
    samples = batch.samples
    sizes = [(int(s.image.shape[1]), int(s.image.shape[2])) for s in samples]
    gt = [s.gt_boxes.to(features.device) for s in samples if s.gt_boxes is not None]
    if len(gt) != len(samples):
        raise ValueError("a faster-rcnn training batch needs every image's ground truth")
    proposals, losses = model.rpn(features, sizes, gt)
    norm = BoxNorm(model.box_means, model.box_stds)  # on the model's device
    images = []
    for sample, props in zip(samples, proposals, strict=True):
        extra = None if source.extra_boxes is None else source.extra_boxes(sample.image_id)
        images.append(scored_proposals(sample, props, source.fg_thresh, norm, extra))
    return images, losses
