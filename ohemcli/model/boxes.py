"""Box encoding for Fast R-CNN regression targets.

Targets are the usual (dx, dy, dw, dh) deltas, divided by the standard deviations
(0.1, 0.1, 0.2, 0.2) with zero means, as in Fast R-CNN. Boxes are 0-based continuous
(x1, y1, x2, y2); widths are ``x2 - x1`` (no +1: that convention belongs to the VOC evaluator).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BOX_STDS = (0.1, 0.1, 0.2, 0.2)
# Exponentials of larger deltas overflow; log(1000/16) is torchvision's clamp for the same reason.
_MAX_LOG_RATIO = math.log(1000.0 / 16)


def _centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode(rois: Tensor, gt: Tensor) -> Tensor:
    """Normalised deltas that move each RoI onto its ground-truth box, (R, 4)."""
    px, py, pw, ph = _centres(rois)
    gx, gy, gw, gh = _centres(gt)
    deltas = torch.stack(
        [(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1
    )
    return deltas / deltas.new_tensor(BOX_STDS)


def decode(rois: Tensor, deltas: Tensor) -> Tensor:
    """Apply normalised deltas ``(R, 4)`` to RoIs ``(R, 4)``; the inverse of :func:`encode`."""
    deltas = deltas * deltas.new_tensor(BOX_STDS)
    px, py, pw, ph = _centres(rois)
    cx = px + deltas[:, 0] * pw
    cy = py + deltas[:, 1] * ph
    w = pw * torch.exp(deltas[:, 2].clamp(max=_MAX_LOG_RATIO))
    h = ph * torch.exp(deltas[:, 3].clamp(max=_MAX_LOG_RATIO))
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)
