"""``model.box_norm: data``: the per-class statistics of the training RoIs' regression targets.

As the OHEM release (``lib/roi_data_layer/roidb.py``, ``add_bbox_regression_targets``): every
foreground RoI of the training set (proposals and ground-truth boxes with max IoU >= fg_thresh),
flipped copies included when training flips, gives its raw (dx, dy, dw, dh); each class's mean and
std over them normalise that class's targets. With flips the dx mean is 0: a flipped copy
negates dx.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from ohemcli.boxes import BoxNorm, encode_deltas
from ohemcli.data.batching import TrainImages
from ohemcli.errors import UserError
from ohemcli.progress import make_progress

BOX_NORMS = ("fixed", "data")


def fit_box_norm(images: TrainImages, flip: bool, show_progress: bool = True) -> BoxNorm:
    """Per-class means and stds of the raw targets of every foreground RoI of ``images``."""
    deltas, labels = [], []
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("box target statistics", total=len(images))
        for index in range(len(images)):
            rois, gt_boxes, gt_labels = images.image_rois(index)
            if len(gt_boxes):
                max_iou, argmax = box_iou(rois, gt_boxes).max(dim=1)
                fg = max_iou >= images.fg_thresh
                deltas.append(encode_deltas(rois[fg], gt_boxes[argmax[fg]]))
                labels.append(gt_labels[argmax[fg]])
            progress.advance(task)
    num_classes = images.dataset.num_classes
    if not deltas:
        return BoxNorm.fixed(num_classes)
    all_deltas, all_labels = torch.cat(deltas), torch.cat(labels)
    if flip:  # the release's roidb holds the flipped images too
        mirrored = all_deltas.clone()
        mirrored[:, 0] = -mirrored[:, 0]
        all_deltas, all_labels = torch.cat([all_deltas, mirrored]), all_labels.repeat(2)
    return BoxNorm.from_deltas(all_deltas, all_labels, num_classes)


def make_box_norm(
    mode: str, images: TrainImages, flip: bool, show_progress: bool = True
) -> BoxNorm:
    """``fixed`` or ``data`` (see the module docstring) for ``model.box_norm``."""
    if mode not in BOX_NORMS:
        raise UserError(f"model.box_norm: unknown '{mode}' (choose {' or '.join(BOX_NORMS)})")
    if mode == "fixed":
        return BoxNorm.fixed(images.dataset.num_classes)
    return fit_box_norm(images, flip, show_progress)
