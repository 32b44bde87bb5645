"""OHEM's selection: top-k by loss after loss-scored NMS."""

import pytest
import torch
from torchvision.ops import box_iou

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.model.losses import RoILosses
from ohemcli.samplers import OHEMSampler, build_sampler
from ohemcli.samplers.base import ImageRoIs


def _rois(boxes):
    n = len(boxes)
    return ImageRoIs(torch.tensor(boxes, dtype=torch.float32), torch.zeros(n, dtype=torch.int64),
                     torch.zeros(n), torch.zeros(n, 4), "img")  # fmt: skip


BOXES = [
    [0, 0, 10, 10],  # 0: loss 5.0
    [0, 0, 10, 10.5],  # 1: near-duplicate of 0 (IoU 0.95), loss 4.0 -> suppressed
    [50, 50, 60, 60],  # 2: loss 3.0
    [100, 0, 110, 10],  # 3: loss 1.0
    [0, 100, 10, 110],  # 4: loss 2.0
    [50, 50, 60, 61],  # 5: near-duplicate of 2 (IoU 0.91), loss 2.5 -> suppressed
]
CLS = torch.tensor([5.0, 4.0, 3.0, 1.0, 2.0, 2.5])


def test_top_k_after_nms_suppresses_planted_duplicates():
    sampler = build_sampler(SamplerConfig(name="ohem", ohem_nms=True, ohem_nms_iou=0.7))
    chosen = sampler.select(_rois(BOXES), RoILosses(CLS, torch.zeros(6)), 3, torch.Generator())
    # After NMS the survivors by loss are 0 (5.0), 2 (3.0), 4 (2.0), 3 (1.0); top 3:
    assert chosen.tolist() == [0, 2, 4]


def test_without_nms_it_is_plain_top_k():
    sampler = build_sampler(SamplerConfig(name="ohem", ohem_nms=False))
    chosen = sampler.select(_rois(BOXES), RoILosses(CLS, torch.zeros(6)), 3, torch.Generator())
    assert chosen.tolist() == torch.topk(CLS, 3).indices.tolist() == [0, 1, 2]


def test_box_loss_counts_unless_cls_ranking():
    box = torch.tensor([0.0, 0.0, 0.0, 10.0, 0.0, 0.0])  # makes RoI 3 the hardest by cls+box
    losses = RoILosses(CLS, box)
    both = build_sampler(SamplerConfig(name="ohem", ohem_loss="cls+box")).select(
        _rois(BOXES), losses, 1, torch.Generator()
    )
    cls_only = build_sampler(SamplerConfig(name="ohem", ohem_loss="cls")).select(
        _rois(BOXES), losses, 1, torch.Generator()
    )
    assert both.tolist() == [3]
    assert cls_only.tolist() == [0]


def test_unknown_ranking_loss_or_scope_is_a_user_error_naming_the_config_key():
    with pytest.raises(UserError, match=r"^sampler\.ohem_loss = 'box' is not allowed"):
        build_sampler(SamplerConfig(name="ohem", ohem_loss="box"))
    with pytest.raises(UserError, match=r"^sampler\.ohem_nms_scope = 'class' is not allowed"):
        build_sampler(SamplerConfig(name="ohem", ohem_nms_scope="class"))
    with pytest.raises(UserError, match=r"^OHEMSampler nms_scope: unknown 'class'"):
        OHEMSampler(nms_scope="class")  # a Python caller of the class itself


def _bg_over_fg():
    """A background RoI of loss 5 over a foreground RoI of loss 3 at IoU 0.9, and a far one."""
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]], dtype=torch.float32)
    # IoU of RoIs 0 and 1: intersection 10 * 9 = 90 over union 100 (torchvision, no +1).
    assert torch.isclose(box_iou(boxes[:1], boxes[1:2]), torch.tensor(0.9)).all()
    rois = ImageRoIs(boxes, torch.tensor([0, 1, 0]), torch.tensor([0.3, 0.7, 0.0]),
                     torch.zeros(3, 4), "img")  # fmt: skip
    return rois, RoILosses(torch.tensor([5.0, 3.0, 1.0]), torch.zeros(3))


@pytest.mark.parametrize(("scope", "expected"), [("image", [0, 2]), ("label", [0, 1, 2])])
def test_nms_scope_image_lets_background_suppress_foreground_and_label_does_not(scope, expected):
    rois, losses = _bg_over_fg()
    sampler = build_sampler(SamplerConfig(name="ohem", ohem_nms_iou=0.7, ohem_nms_scope=scope))
    assert sampler.select(rois, losses, 3, torch.Generator()).tolist() == expected


def test_label_scope_still_suppresses_duplicates_of_the_same_label():
    # The planted near-duplicates of BOXES all share label 0, so "label" equals "image" here.
    for scope in ("label", "image"):
        sampler = build_sampler(SamplerConfig(name="ohem", ohem_nms_scope=scope))
        chosen = sampler.select(_rois(BOXES), RoILosses(CLS, torch.zeros(6)), 3, torch.Generator())
        assert chosen.tolist() == [0, 2, 4]


def test_default_scope_is_the_releases_per_label_nms():
    assert SamplerConfig().ohem_nms_scope == "label"
    sampler = build_sampler(SamplerConfig(name="ohem"))
    assert (sampler.nms_iou, sampler.nms_scope, sampler.ranking_loss) == (0.7, "label", "cls+box")
    assert build_sampler(SamplerConfig(name="ohem", ohem_nms=False)).nms_iou is None


def test_read_only_pass_builds_no_autograd_graph():

    from ohemcli.config import ModelConfig
    from ohemcli.engine.step import readonly_losses
    from ohemcli.model.fast_rcnn import FastRCNN

    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    features = model.features(torch.rand(1, 3, 64, 64))
    assert features.requires_grad  # the training pass will need the graph of the features
    rois = ImageRoIs(
        torch.tensor([[0.0, 0.0, 30.0, 30.0], [10.0, 10.0, 50.0, 60.0]]),
        torch.tensor([1, 0]),
        torch.tensor([0.8, 0.2]),
        torch.zeros(2, 4),
        "img",
    )
    (losses,), _ = readonly_losses(model, features, [rois])
    assert losses.cls.grad_fn is None and not losses.cls.requires_grad
    assert losses.box.grad_fn is None and not losses.box.requires_grad
    assert losses.cls.shape == (2,)
