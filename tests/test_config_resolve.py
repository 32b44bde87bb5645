"""config.resolve and load_config apply the settings an override implies, as the CLI does."""

from __future__ import annotations

import pytest

from ohemcli.cli.overrides import build_config
from ohemcli.config import ExperimentConfig, load_config, parse_config, resolve
from ohemcli.errors import UserError
from ohemcli.presets import preset_text


def test_load_config_gives_what_the_command_line_gives():
    cli = build_config("cpu_tiny", {"backbone": "resnet18", "test_protocol": "ohem-release"})
    text = preset_text("cpu_tiny")
    keys = {"model.backbone": "resnet18", "eval.protocol": "ohem-release"}
    py = parse_config(text, "preset cpu_tiny", keys)
    assert py == cli
    assert (py.model.pretrained, py.model.frozen_convs) == ("torchvision", 5)
    assert (py.eval.max_dets, py.eval.score_thresh) == (2000, 0.00001)


def test_resolve_lays_overrides_and_their_implications_over_a_config():
    paper = parse_config(preset_text("voc07_vgg16"), "p")
    tiny = resolve(paper, {"model.backbone": "tiny"})
    assert (tiny.model.pretrained, tiny.model.frozen_convs) == ("shipped", 0)
    assert tiny.model.input_norm == "torchvision"  # the new weights' own, not caffe's
    assert resolve(paper) == paper
    assert resolve(paper, {"eval.max_dets": 300}).eval.protocol == "custom"
    default = resolve(ExperimentConfig(), {"model.backbone": "vgg16"})
    assert default == load_config(None, {"model.backbone": "vgg16"})
    told = resolve(ExperimentConfig(), {"model.backbone": "vgg16", "model.pretrained": "none"})
    assert told.model.pretrained == "none"
    with pytest.raises(UserError, match="eval.protocol and eval.max_dets: give one"):
        resolve(paper, {"eval.protocol": "default", "eval.max_dets": 5})
