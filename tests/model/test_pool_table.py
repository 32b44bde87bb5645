"""The pooling table against torchvision's roi_pool: the values, exactly."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_pool

from ohemcli.model.pool_table import PoolTable, _floor_log2, _round_half_away


def _case(seed: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random ReLU features (N=2) and RoIs that reach past the map, are malformed (x2 < x1) or
    sit on half cells (C's round differs from torch's there); ``ties``: many equal values."""
    g = torch.Generator().manual_seed(seed)
    h, w = (
        int(torch.randint(1, 24, (1,), generator=g)),
        int(torch.randint(1, 30, (1,), generator=g)),
    )
    features = torch.relu(torch.randn(2, 3, h, w, generator=g))
    if ties:
        features = torch.round(features * 2) / 2
    r = 40
    xy = torch.rand(r, 4, generator=g) * torch.tensor([w, h, w, h]) * 8 * 1.3 - 8
    x1, x2 = torch.minimum(xy[:, 0], xy[:, 2]), torch.maximum(xy[:, 0], xy[:, 2])
    y1, y2 = torch.minimum(xy[:, 1], xy[:, 3]), torch.maximum(xy[:, 1], xy[:, 3])
    x1[:5], x2[:5] = x2[:5], x1[:5]  # malformed: forced to one cell wide
    x1[5:10] = torch.floor(x1[5:10]) + 4.0  # x1 / 8 ends in .5
    image = torch.randint(0, 2, (r, 1), generator=g).float()
    size = int(torch.randint(1, 8, (1,), generator=g))
    return features, torch.cat([image, torch.stack([x1, y1, x2, y2], 1)], 1), size


def test_round_half_away_and_floor_log2_by_hand():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, 2.4])
    assert _round_half_away(x).tolist() == [1.0, 2.0, 3.0, -1.0, -3.0, 0.0, 2.0]
    n = torch.tensor([1, 2, 3, 4, 7, 8, 9, 31, 32])
    assert _floor_log2(n).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 5]


@pytest.mark.parametrize("seed", range(12))
def test_values_equal_torchvision(seed):
    features, rois, size = _case(seed, ties=seed % 2 == 0)
    expected = roi_pool(features, rois, (size, size), 0.125)
    table = PoolTable(features, rois, size, 0.125)
    assert torch.equal(table.values(), expected)
    some = torch.tensor([3, 0, 17, 17, 39])
    assert torch.equal(table.values(some), expected[some])


def test_values_in_parts_equal_one_gather(monkeypatch):
    features, rois, size = _case(5, ties=False)
    whole = PoolTable(features, rois, size, 0.125).values()
    monkeypatch.setattr("ohemcli.model.pool_table._GATHER_FLOATS", 4 * 3 * 7)  # 7 bins a part
    assert torch.equal(PoolTable(features, rois, size, 0.125).values(), whole)


def test_no_rois():
    table = PoolTable(torch.ones(1, 2, 4, 4), torch.zeros(0, 5), 7, 0.125)
    assert table.values().shape == (0, 2, 7, 7)
