"""CLI options over presets: which config a command line resolves to."""

import pytest

from ohemcli.cli.options import Backbone, build_config
from ohemcli.errors import UserError


def test_synth_defaults_to_the_cpu_preset_and_real_data_to_the_papers():
    assert build_config(None, {"data": "synth"}).model.backbone == "tiny"
    paper = build_config(None, {"data": "/some/VOC2007"})
    assert paper.model.backbone == "vgg16" and paper.model.pretrained
    assert paper.data.data == "/some/VOC2007"
    assert (paper.train.iters, paper.train.lr_steps) == (40000, (30000,))


def test_options_override_the_preset():
    cfg = build_config("synth_tiny", {"iters": 7, "lr": 0.5, "sampler": "ohem"})
    assert (cfg.train.iters, cfg.train.lr, cfg.sampler.name) == (7, 0.5, "ohem")


def test_choosing_vgg16_means_imagenet_weights_unless_told_otherwise():
    assert build_config("synth_tiny", {"backbone": Backbone.vgg16}).model.pretrained
    off = build_config("synth_tiny", {"backbone": Backbone.vgg16, "pretrained": False})
    assert not off.model.pretrained


def test_unknown_preset_names_the_option():
    with pytest.raises(UserError, match="--config"):
        build_config("nope", {})
