"""Box encoding for Fast R-CNN regression targets, and their normalisation.

Targets are the usual (dx, dy, dw, dh) deltas. They are normalised per class: minus a mean, divided
by a standard deviation (:class:`BoxNorm`). ``fixed`` uses zero means and stds (0.1, 0.1, 0.2, 0.2)
for every class, as Fast R-CNN's configuration file; ``data`` uses the means and stds of the
training RoIs' targets, class by class, as the OHEM release does (its ``roidb.py``
``add_bbox_regression_targets`` with ``BBOX_NORMALIZE_TARGETS_PRECOMPUTED: False``). The model
keeps the statistics it was trained with and decodes with them. Boxes are 0-based continuous
(x1, y1, x2, y2); widths are ``x2 - x1`` (no +1: that convention belongs to the VOC evaluator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BOX_STDS = (0.1, 0.1, 0.2, 0.2)
# Exponentials of larger deltas overflow; log(1000/16) is torchvision's clamp for the same reason.
_MAX_LOG_RATIO = math.log(1000.0 / 16)
# A class whose targets barely vary (fewer than 2, or a std under this) keeps the fixed norm:
# dividing by ~0 would turn rounding noise into huge targets.
_MIN_STD = 1e-6


def _centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode_deltas(rois: Tensor, gt: Tensor) -> Tensor:
    """Raw (not normalised) deltas that move each RoI onto its ground-truth box, (R, 4)."""
    px, py, pw, ph = _centres(rois)
    gx, gy, gw, gh = _centres(gt)
    return torch.stack(
        [(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1
    )


def encode(rois: Tensor, gt: Tensor) -> Tensor:
    """Deltas normalised by the fixed stds, (R, 4)."""
    deltas = encode_deltas(rois, gt)
    return deltas / deltas.new_tensor(BOX_STDS)


def decode(
    rois: Tensor, deltas: Tensor, stds: Tensor | None = None, means: Tensor | None = None
) -> Tensor:
    """Apply normalised deltas ``(R, 4)`` to RoIs ``(R, 4)``; the inverse of the encoding.

    ``stds`` and ``means`` are (4,) or (R, 4); by default the fixed stds and zero means.
    """
    deltas = deltas * (deltas.new_tensor(BOX_STDS) if stds is None else stds)
    if means is not None:
        deltas = deltas + means
    px, py, pw, ph = _centres(rois)
    cx = px + deltas[:, 0] * pw
    cy = py + deltas[:, 1] * ph
    w = pw * torch.exp(deltas[:, 2].clamp(max=_MAX_LOG_RATIO))
    h = ph * torch.exp(deltas[:, 3].clamp(max=_MAX_LOG_RATIO))
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)


@dataclass(frozen=True)
class BoxNorm:
    """Per-class means and stds of the regression targets, (K+1, 4) each; row 0 is background."""

    means: Tensor
    stds: Tensor

    @classmethod
    def fixed(cls, num_classes: int) -> BoxNorm:
        """Zero means and stds (0.1, 0.1, 0.2, 0.2) for every class (Fast R-CNN's default)."""
        return cls(
            torch.zeros(num_classes + 1, 4), torch.tensor(BOX_STDS).repeat(num_classes + 1, 1)
        )

    @classmethod
    def from_deltas(cls, deltas: Tensor, labels: Tensor, num_classes: int) -> BoxNorm:
        """Means and population stds of raw foreground ``deltas`` (M, 4), class by class.

        ``labels`` (M,) in 1..K. As the OHEM release: var = E[x^2] - E[x]^2 over every foreground
        RoI of the training set. A class with under 2 RoIs or a std under 1e-6 keeps the fixed
        norm (see ``_MIN_STD``).
        """
        norm = cls.fixed(num_classes)
        deltas, labels = deltas.double(), labels.long()
        for k in range(1, num_classes + 1):
            d = deltas[labels == k]
            if len(d) < 2:
                continue
            mean = d.mean(dim=0)
            std = ((d**2).mean(dim=0) - mean**2).clamp(min=0).sqrt()
            if bool((std < _MIN_STD).any()):
                continue
            norm.means[k], norm.stds[k] = mean.float(), std.float()
        return norm

    def normalise(self, deltas: Tensor, labels: Tensor) -> Tensor:
        """Raw deltas (R, 4) of RoIs labelled ``labels`` (R,) -> training targets."""
        return (deltas - self.means[labels]) / self.stds[labels]

    def state(self) -> dict[str, Tensor]:
        """The statistics as tensors (for a checkpoint)."""
        return {"means": self.means, "stds": self.stds}


def iou_np(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """Elementwise IoU of boxes ``a`` (..., 4) and ``b`` (..., 4), broadcast against each other.

    ``plus_one``: the VOC devkit's pixel convention, widths ``x2 - x1 + 1`` (inclusive integer
    corners, as the evaluator and annotations count them); otherwise widths are ``x2 - x1``.
    """
    one = 1.0 if plus_one else 0.0
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + one, 0.0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + one, 0.0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area_b = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    return inter / (area_a + area_b - inter)
