"""RoI pooling keeps the boxes in float32 whatever the features' dtype (bfloat16 autocast)."""

import pytest
import torch

from ohemcli.config import ModelConfig
from ohemcli.model.fast_rcnn import FastRCNN


@pytest.mark.parametrize("roi_op", ["pool", "align"])
def test_bfloat16_autocast_pools_the_same_bins_as_float32(roi_op):
    model = FastRCNN(ModelConfig(backbone="tiny", roi_op=roi_op), num_classes=2)
    assert model.stride == 8
    torch.manual_seed(0)
    # What a conv layer returns under bfloat16 autocast; 140 x 8 = 1120 px wide.
    features = torch.randn(1, 4, 60, 140).bfloat16()
    rois = torch.tensor([[0.0, 301.5, 40.0, 603.5, 300.0]])
    # bfloat16 keeps 8 significant bits: 301.5 -> 302 and 603.5 -> 604 (multiples of 2 and 4 px).
    assert rois[0, 1:].bfloat16().float().tolist() == [302.0, 40.0, 604.0, 300.0]
    reference = model.pool(features.float(), rois)  # float32 all the way
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = model.pool(features, rois)
    assert pooled.dtype == torch.bfloat16
    assert torch.equal(pooled, reference.bfloat16())
    # The check can fail: the rounded box (the old cast to the features' dtype) pools other bins.
    rounded = model.pool(features.float(), rois.bfloat16().float())
    assert not torch.equal(rounded.bfloat16(), reference.bfloat16())


def test_float32_roi_forward_is_unchanged_by_the_float32_pooling():
    from torchvision.ops import roi_pool

    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    features = torch.randn(1, 4, 20, 30)
    rois = torch.tensor([[0.0, 10.5, 12.0, 90.25, 100.0]])
    assert torch.equal(model.pool(features, rois), roi_pool(features, rois, (7, 7), 1 / 8))
