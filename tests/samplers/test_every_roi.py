"""sampling-free and focal keep every RoI (foreground and all background) and name their loss."""

import torch

from ohemcli.config import SamplerConfig
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs, as_selection


def test_every_roi_is_kept_with_the_sampler_loss():
    labels = torch.tensor([0, 2, 0, 1, 0])
    rois = ImageRoIs(torch.zeros(5, 4), labels, torch.tensor([0.0, 0.6, 0.49, 1.0, 0.05]),
                     torch.zeros(5, 4), "img")  # fmt: skip
    for name, loss in (("sampling-free", "guided"), ("focal", "focal")):
        sampler = build_sampler(SamplerConfig(name=name, focal_gamma=1.5))
        sel = as_selection(sampler.select(rois, None, 2, torch.Generator()), 5)
        assert sel.indices.tolist() == [0, 1, 2, 3, 4]  # num (2) does not cap it
        assert sel.loss == loss and sel.cls_weight is None and sel.box_weight is None
    assert build_sampler(SamplerConfig(name="focal", focal_gamma=1.5)).loss_options == {
        "focal_gamma": 1.5,
        "focal_alpha": 0.25,
        "focal_norm": "rois",
    }


def test_focal_form_names_the_loss():
    # the published form is sigmoid (mmdetection's FocalLoss); softmax is the named variant
    assert build_sampler(SamplerConfig(name="focal")).loss == "focal"
    assert build_sampler(SamplerConfig(name="focal", focal_form="softmax")).loss == "softmax-focal"
