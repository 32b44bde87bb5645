"""The chosen RoIs of a read-only pass, pooled for the training pass without pooling them again.

OHEM's read-only pass pools every RoI without autograd; the training pass needs the chosen ones
with autograd. :func:`chosen_rows` takes their rows of the read-only pooling and gives them
torchvision's own backward (``_roi_pool_backward``) through that pooling's argmaxes: the values
and the gradients are those of ``torchvision.ops.roi_pool`` over the chosen RoIs, bit for bit
(tests/model/test_roi_pooling.py, tests/engine/test_rank_pool.py), at the cost of an index.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import Tensor


@dataclass
class PooledRoIs:
    """Every RoI of a read-only pass pooled without autograd, kept for :func:`chosen_rows`."""

    pooled: Tensor  # (R, C, S, S) float32
    rois: Tensor  # (R, 5): image index, x1, y1, x2, y2 (input pixels)
    argmax: Tensor | None  # (R, C, S, S) int32: each bin's maximum as h * W + w (None: align)
    scale: float  # feature cells per input pixel (1 / stride)


def pool_with_argmax(features: Tensor, rois: Tensor, size: int, scale: float) -> PooledRoIs:
    """Every RoI of ``rois`` (R, 5) max-pooled from float32 ``features`` without autograd, by
    torchvision's ``roi_pool`` kernel, with the argmaxes that :func:`chosen_rows` reuses."""
    with torch.no_grad():
        pooled, argmax = torch.ops.torchvision.roi_pool(features, rois, scale, size, size)
    return PooledRoIs(pooled, rois, argmax, scale)


class _ChosenRows(torch.autograd.Function):
    """Rows ``index`` of a pooling as an output of ``features``, with roi_pool's backward."""

    @staticmethod
    def forward(ctx, features: Tensor, pooled: PooledRoIs, index: Tensor) -> Tensor:
        if pooled.argmax is None:
            raise ValueError("chosen_rows: this pooling kept no argmaxes (RoIAlign); pool again")
        rois, argmax = pooled.rois.index_select(0, index), pooled.argmax.index_select(0, index)
        ctx.save_for_backward(rois, argmax)
        ctx.scale, ctx.shape = pooled.scale, features.shape
        return pooled.pooled.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        rois, argmax = ctx.saved_tensors
        n, c, h, w = ctx.shape
        size = grad.shape[-1]
        grad_features = torch.ops.torchvision._roi_pool_backward(
            grad.contiguous(), rois, argmax, ctx.scale, size, size, n, c, h, w
        )
        return grad_features, None, None


def chosen_rows(features: Tensor, pooled: PooledRoIs, index: Tensor) -> Tensor:
    """Rows ``index`` (into the pooled RoIs) of ``pooled``, differentiable in ``features`` (the
    float32 map they were pooled from) exactly as ``roi_pool`` of those RoIs would be: the
    backward scatters each bin's gradient to the cell its argmax names, row by row in ``index``
    order, as torchvision's backward of a fresh pooling of those rows does."""
    return _ChosenRows.apply(features, pooled, index)
