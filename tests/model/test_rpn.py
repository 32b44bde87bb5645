"""faster-rcnn's RPN: torchvision's parts wired to one feature map, as the config says."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from ohemcli.config import ModelConfig, anchor_sizes
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.model.rpn import ProposalNetwork


def test_the_reference_anchors_are_scaled_to_the_image_size_unless_given():
    # py-faster-rcnn: base 16 x scales (8, 16, 32) = 128, 256, 512 px at a 600-px shorter side
    assert anchor_sizes(ModelConfig(), 600) == (128, 256, 512)
    assert anchor_sizes(ModelConfig(), 300) == (64, 128, 256)
    assert anchor_sizes(ModelConfig(rpn_anchor_sizes=(16, 40)), 300) == (16, 40)


def test_the_rpn_is_torchvisions_with_the_configs_settings():
    cfg = ModelConfig(rpn_pre_nms_train=900, rpn_post_nms_train=90, rpn_fg_iou=0.6)
    net = ProposalNetwork(cfg, 300, channels=64, stride=8)
    rpn = net.rpn
    assert isinstance(rpn, RegionProposalNetwork)
    assert isinstance(rpn.anchor_generator, AnchorGenerator)
    assert isinstance(rpn.head, RPNHead)
    assert rpn.anchor_generator.num_anchors_per_location() == [9]  # 3 sizes x 3 ratios
    assert rpn._pre_nms_top_n == {"training": 900, "testing": 6000}
    assert rpn._post_nms_top_n == {"training": 90, "testing": 300}
    assert rpn.proposal_matcher.high_threshold == 0.6 and rpn.proposal_matcher.low_threshold == 0.3
    assert rpn.fg_bg_sampler.batch_size_per_image == 256
    assert rpn.fg_bg_sampler.positive_fraction == 0.5
    assert rpn.nms_thresh == 0.7


def test_anchors_sit_on_the_stride_whatever_the_trunk_rounding():
    # A 37-row map of a 300-px image (rounded up from 37.5): torchvision would read the stride
    # as 300 // 38 = 7 from the image; the network is shown stride x map instead.
    net = ProposalNetwork(ModelConfig(rpn_anchor_sizes=(32,), rpn_aspect_ratios=(1.0,)), 300, 4, 8)
    features = torch.zeros(1, 4, 38, 5)
    from torchvision.models.detection.image_list import ImageList

    shown = features.new_zeros(()).expand(1, 1, 38 * 8, 5 * 8)
    anchors = net.rpn.anchor_generator(ImageList(shown, [(300, 40)]), [features])[0]
    centres_x = ((anchors[:, 0] + anchors[:, 2]) / 2).unique()
    assert centres_x.tolist() == [0.0, 8.0, 16.0, 24.0, 32.0]


def test_proposals_and_losses_in_training_and_only_proposals_at_test():
    torch.manual_seed(0)
    cfg = ModelConfig(rpn_pre_nms_train=200, rpn_post_nms_train=50, rpn_post_nms_test=20)
    net = ProposalNetwork(cfg, 128, channels=8, stride=8)
    features = torch.randn(2, 8, 16, 16)
    gt = [torch.tensor([[10.0, 10.0, 60.0, 70.0]]), torch.zeros(0, 4)]  # an image with no object
    net.train()
    boxes, losses = net(features, [(128, 128), (120, 100)], gt)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert [len(b) <= 50 for b in boxes] == [True, True] and not boxes[0].requires_grad
    assert boxes[1][:, 2].max() <= 100 and boxes[1][:, 3].max() <= 120  # clipped to (h, w)
    net.eval()
    with torch.no_grad():
        boxes, losses = net(features, [(128, 128), (120, 100)])
    assert losses == {} and max(len(b) for b in boxes) <= 20
    with torch.no_grad(), net.test_counts(6000, 40):
        more = net(features, [(128, 128), (120, 100)])[0]
    # best first after NMS: the first 20 of a 40-proposal pass are the 20-proposal pass
    assert torch.equal(more[0][: len(boxes[0])], boxes[0])
    assert net.rpn._post_nms_top_n["testing"] == 20  # the block put the count back


def test_a_fast_rcnn_model_has_no_rpn_and_the_same_weights_as_before():
    torch.manual_seed(3)
    fast = FastRCNN(ModelConfig(), 2)
    torch.manual_seed(3)
    faster = FastRCNN(ModelConfig(detector="faster-rcnn"), 2, scale=300)
    assert fast.rpn is None and faster.rpn is not None
    shared = fast.state_dict()
    for name, tensor in faster.state_dict().items():
        if not name.startswith("rpn."):
            assert torch.equal(tensor, shared[name]), name


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.box_norm": "data"}, "model.box_norm = data"),
        ({"model.rpn_post_nms_test": 7000}, "model.rpn_post_nms_test 7000 is above"),
        ({"model.rpn_bg_iou": 0.8}, "model.rpn_bg_iou 0.8 is above model.rpn_fg_iou"),
    ],
)
def test_faster_rcnn_settings_that_do_not_fit_are_one_line(overrides, message):
    from ohemcli.config import load_config
    from ohemcli.errors import UserError

    with pytest.raises(UserError, match=message) as err:
        load_config(None, {"model.detector": "faster-rcnn", **overrides})
    assert "\n" not in str(err.value)
