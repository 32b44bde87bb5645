"""The chosen rows of a read-only pooling, reused for the training pass (chosen_rows), have the
values and the gradient that torchvision.ops.roi_pool of those RoIs gives, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_pool

from ohemcli.model.roi_pooling import chosen_rows, pool_with_argmax


def _rois(g: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """``n`` boxes over 2 images of ``h`` x ``w`` px, some of them the same."""
    xy = torch.rand(n, 4, generator=g) * torch.tensor([w, h, w, h])
    boxes = torch.cat([torch.minimum(xy[:, :2], xy[:, 2:]), torch.maximum(xy[:, :2], xy[:, 2:])], 1)
    image = torch.randint(0, 2, (n, 1), generator=g).float()
    rois = torch.cat([image, boxes], dim=1)
    return torch.cat([rois, rois[:5]])


@pytest.mark.parametrize("repeated", [False, True])
def test_chosen_rows_have_roi_pools_values_and_gradient(repeated):
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 5, 10, 14, generator=g)
    rois = _rois(g, 120, 80, 112)
    pooled = pool_with_argmax(features, rois, 7, 1 / 8)
    assert torch.equal(pooled.pooled, roi_pool(features, rois, (7, 7), 1 / 8))
    index = torch.randperm(len(rois), generator=g)[:40]
    if repeated:  # a RoI chosen twice sends its gradient twice, as a fresh pooling would
        index = torch.cat([index, index[:7]])
    upstream = torch.randn(len(index), 5, 7, 7, generator=g)

    fresh = features.clone().requires_grad_()
    expected = roi_pool(fresh, rois[index], (7, 7), 1 / 8)
    (expected * upstream).sum().backward()

    reused = features.clone().requires_grad_()
    got = chosen_rows(reused, pooled, index)
    (got * upstream).sum().backward()

    assert torch.equal(got, expected)
    assert fresh.grad is not None and reused.grad is not None
    assert torch.equal(reused.grad, fresh.grad)
    assert reused.grad.abs().sum() > 0
