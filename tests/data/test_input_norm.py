"""The input normalisation goes with the weights and the run; flipped boxes follow the pixels."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ohemcli.config import config_to_yaml, input_norm, parse_config
from ohemcli.data import batching
from ohemcli.data.batching import TrainImages, flip_boxes, normalise
from ohemcli.data.voc import VOCDataset, load_image
from ohemcli.model.fast_rcnn import without_pretrained
from ohemcli.presets import preset_text
from tests.helpers import tiny_voc_root


def test_caffe_normalisation_by_hand():
    pixel = np.array([[[10, 20, 30]]], np.uint8)  # R, G, B
    out = normalise(pixel, "caffe")
    # BGR order, 0-255, minus the mean pixel (B 102.9801, G 115.9465, R 122.7717), no std
    expected = [30 - 102.9801, 20 - 115.9465, 10 - 122.7717]
    assert out.shape == (3, 1, 1)
    assert out.flatten().tolist() == pytest.approx(expected, abs=1e-4)


def test_torchvision_normalisation_by_hand():
    pixel = np.array([[[10, 20, 30]]], np.uint8)
    expected = [(10 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224, (30 / 255 - 0.406) / 0.225]
    assert normalise(pixel, "torchvision").flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_the_weights_choose_the_normalisation_and_the_config_records_it():
    def model(text: str, **overrides):
        return parse_config(text, "t", overrides).model

    paper = model(preset_text("voc07_vgg16"))
    assert (paper.pretrained, paper.input_norm, paper.pool_ceil) == ("caffe", "caffe", True)
    assert model(preset_text("voc07_vgg16"), **{"model.pretrained": "torchvision"}).input_norm == (
        "torchvision"
    )
    # an explicit choice wins over the weights' own
    forced = {"model.pretrained": "torchvision", "model.input_norm": "caffe"}
    assert model(preset_text("voc07_vgg16"), **forced).input_norm == "caffe"
    # the recorded config reads back the same, so `ohem eval` and --resume normalise alike
    cfg = parse_config(preset_text("voc07_vgg16"), "p")
    assert parse_config(config_to_yaml(cfg), "config.yaml") == cfg
    assert "input_norm: caffe" in config_to_yaml(cfg)
    # a model rebuilt for a checkpoint's weights keeps the run's normalisation
    rebuilt = without_pretrained(cfg)
    assert (rebuilt.model.pretrained, input_norm(rebuilt.model)) == ("none", "caffe")


@pytest.mark.parametrize(
    ("old", "source", "norm"),
    [
        ("{backbone: vgg16, pretrained: true}", "torchvision", "torchvision"),
        ("{backbone: vgg16, pretrained: false}", "none", "torchvision"),
        ("{backbone: resnet18, pretrained: true}", "torchvision", "torchvision"),
        ("{backbone: tiny, pretrained: true}", "shipped", "torchvision"),
        ("{pretrained: true}", "shipped", "torchvision"),  # tiny is the default backbone
    ],
)
def test_an_old_boolean_keeps_the_meaning_it_had(old, source, norm):
    model = parse_config(f"model: {old}\n", "old config.yaml").model
    assert (model.pretrained, model.input_norm) == (source, norm)


def test_a_source_that_does_not_fit_the_backbone_is_one_line():
    with pytest.raises(Exception, match=r"^c.yaml: model.pretrained = 'caffe' does not fit "):
        parse_config("model: {backbone: resnet18, pretrained: caffe}\n", "c.yaml")


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return tiny_voc_root(tmp_path_factory.mktemp("norm"), num_images=1)


@pytest.mark.parametrize("norm", ["caffe", "torchvision"])
def test_train_and_test_images_use_the_runs_normalisation(voc, norm):
    dataset = VOCDataset(voc, "trainval")
    props = {r.image_id: np.array([[0, 0, 20, 20]], np.float32) for r in dataset.records}
    raw = load_image(dataset.records[0].image_path)  # 64x64: scale 64 keeps the size
    test = batching.TestImages(dataset, props, scale=64, max_size=64, input_norm=norm)[0]
    assert torch.equal(test.image, normalise(raw, norm))
    train = TrainImages(dataset, props, scale=64, max_size=64, input_norm=norm)[(0, True)]
    assert torch.equal(train.image, normalise(raw[:, ::-1], norm))


def test_detect_split_builds_its_images_with_the_config_normalisation(monkeypatch):
    from ohemcli.evaluation import inference as evaluate

    seen = []

    class Stop(Exception):
        pass

    def recorder(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs["input_norm"])
        raise Stop

    monkeypatch.setattr(evaluate, "TestImages", recorder)
    cfg = parse_config(preset_text("voc07_vgg16"), "p")
    split = type("Split", (), {"dataset": None, "proposals": None})()
    model = torch.nn.Linear(1, 1)
    with pytest.raises(Stop):
        evaluate.detect_split(model, split, cfg, torch.device("cpu"), show_progress=False)
    cfg = replace(cfg, model=replace(cfg.model, input_norm="torchvision"))
    with pytest.raises(Stop):
        evaluate.detect_split(model, split, cfg, torch.device("cpu"), show_progress=False)
    assert seen == ["caffe", "torchvision"]


def test_flip_boxes_mirrors_pixel_columns_by_hand_and_twice_gives_the_box_back():
    # A 10-pixel-wide image: columns 0..9. The box over columns 2..4 mirrors to columns
    # 9-4=5 .. 9-2=7; the full-width box 0..9 stays 0..9. Rows are untouched.
    boxes = torch.tensor([[2.0, 1.0, 4.0, 3.0], [0.0, 0.0, 9.0, 5.0]])
    flipped = flip_boxes(boxes, 10)
    assert flipped.tolist() == [[5.0, 1.0, 7.0, 3.0], [0.0, 0.0, 9.0, 5.0]]
    assert torch.equal(flip_boxes(flipped, 10), boxes)


def test_flip_boxes_lands_on_the_mirrored_pixels_of_an_image():
    # Paint the box's pixels, mirror the image's columns, and read the painted columns back.
    image = torch.zeros(6, 10)
    image[1:4, 2:5] = 1.0  # rows 1..3, columns 2..4 inclusive
    mirrored = image.flip(1)
    cols = torch.nonzero(mirrored.sum(0)).flatten()
    box = flip_boxes(torch.tensor([[2.0, 1.0, 4.0, 3.0]]), 10)[0]
    assert (box[0].item(), box[2].item()) == (cols.min().item(), cols.max().item())
