"""Caffe's VGG16: its state dict onto our modules, Caffe's ceil-mode pooling, and the file check.

Full-size VGG16s are built on the meta device: real module structure and shapes, no memory and no
initialisation time. Loadable weights are checked on a narrow VGG16 (same layer layout).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models import vgg16
from torchvision.models.vgg import make_layers

from ohemcli.config import ModelConfig
from ohemcli.errors import UserError
from ohemcli.model.backbones import build_vgg16, check_pretrained_available
from ohemcli.model.caffe_vgg16 import (
    CONV_INDEX,
    caffe_vgg16_path,
    load_caffe_vgg16,
    to_torchvision_vgg16,
)
from ohemcli.model.fast_rcnn import FastRCNN

CAFFE_CONVS = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3",
]  # fmt: skip


def _narrow_vgg16() -> nn.Module:
    """VGG16's layer layout (13 convs, 5 pools, classifier 0/3/6) at 1/16 of its width."""
    net = nn.Module()
    widths = [4, 4, "M", 8, 8, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32, "M"]
    net.features = make_layers(widths)
    net.classifier = nn.Sequential(
        nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Dropout(),
        nn.Linear(64, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 10),
    )  # fmt: skip
    return net


def _caffe_named(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s tensors under Caffe's layer names, as a reader of the .caffemodel gives them."""
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    state = {}
    for name, conv in zip(CAFFE_CONVS, convs, strict=True):
        state[f"{name}.weight"], state[f"{name}.bias"] = conv.weight, conv.bias
    for name, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        state[f"{name}.weight"] = net.classifier[index].weight
        state[f"{name}.bias"] = net.classifier[index].bias
    return {k: v.detach().clone() for k, v in state.items()}


def _old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision keys with fc6/fc7/fc8 at classifier.1/.4/.6 (jcjohns' vgg16-00b39a1b.pth)."""
    moved = {"classifier.0.": "classifier.1.", "classifier.3.": "classifier.4."}
    out = {}
    for key, value in state.items():
        for old, new in moved.items():
            key = key.replace(old, new) if key.startswith(old) else key
        out[key] = value
    return out


@pytest.mark.parametrize("layout", ["torchvision", "caffe names", "classifier.1/.4"])
def test_each_layout_loads_every_conv_and_fc6_fc7_onto_the_right_module(layout):
    torch.manual_seed(0)
    source = _narrow_vgg16()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    if layout == "caffe names":
        state = _caffe_named(source)
    elif layout == "classifier.1/.4":
        state = _old_layout(state)
    torch.manual_seed(1)
    target = _narrow_vgg16()
    load_caffe_vgg16(target, state, "w.pth")
    for (name, a), b in zip(source.named_parameters(), target.parameters(), strict=True):
        if name.startswith("classifier.6"):  # fc8: the ImageNet classifier, never loaded
            assert not torch.equal(a, b)
        else:
            assert torch.equal(a, b), (layout, name)


def test_caffe_names_land_on_torchvision_feature_indices_by_hand():
    # conv1_1 is features.0; pool1 (index 4) comes after conv1_2 (2); conv5_3 is the 13th conv, 28
    names = ("conv1_1.weight", "conv5_3.bias", "fc7.weight", "fc8.bias")
    mapped = to_torchvision_vgg16({name: torch.zeros(1) for name in names})
    assert set(mapped) == {"features.0.weight", "features.28.bias", "classifier.3.weight"}
    assert list(CONV_INDEX.values()) == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def test_the_full_size_key_names_and_shapes_fit_torchvision_vgg16():
    with torch.device("meta"):
        net = vgg16(weights=None)
    own = net.state_dict()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [net.features[i] for i in CONV_INDEX.values()] == convs
    # Caffe's VGG16 blob shapes: conv (out, in, 3, 3), fc6 (4096, 512*7*7), fc7 (4096, 4096)
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state = {}
    for i, name in enumerate(CAFFE_CONVS):
        state[f"{name}.weight"] = torch.empty(widths[i + 1], widths[i], 3, 3, device="meta")
        state[f"{name}.bias"] = torch.empty(widths[i + 1], device="meta")
    state["fc6.weight"] = torch.empty(4096, 25088, device="meta")
    state["fc7.weight"] = torch.empty(4096, 4096, device="meta")
    state.update({"fc6.bias": torch.empty(4096), "fc7.bias": torch.empty(4096)})
    mapped = to_torchvision_vgg16(state)
    assert len(mapped) == 30
    assert all(tuple(v.shape) == tuple(own[k].shape) for k, v in mapped.items())


def test_a_wrong_shape_or_a_missing_layer_is_one_line_naming_the_file():
    torch.manual_seed(0)
    state = dict(_narrow_vgg16().state_dict())
    target = _narrow_vgg16()
    with pytest.raises(UserError, match=r"^w.pth: not a VGG16 state dict \(2 of 30 .*features.28"):
        load_caffe_vgg16(target, {k: v for k, v in state.items() if ".28." not in k}, "w.pth")
    state["features.0.weight"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(UserError, match=r"^w.pth: features.0.weight has shape \(4, 3, 5, 5\)"):
        load_caffe_vgg16(target, state, "w.pth")


def test_caffe_weights_missing_is_one_line_saying_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path))
    cfg = ModelConfig(backbone="vgg16", pretrained="caffe")
    with pytest.raises(UserError) as err:
        check_pretrained_available(cfg)
    message = str(err.value)
    assert str(tmp_path / "weights" / "vgg16_caffe.pth") in message
    assert "ohem data download vgg16-caffe" in message and "\n" not in message
    assert caffe_vgg16_path() == tmp_path / "weights" / "vgg16_caffe.pth"
    check_pretrained_available(ModelConfig(backbone="vgg16", pretrained="caffe", weights="w.pt"))
    check_pretrained_available(ModelConfig(backbone="vgg16", pretrained="torchvision"))


def _caffe_pool(size: int) -> int:
    """Caffe's pooling output size (pooling_layer.cpp): ceil((in + 2 pad - kernel) / stride) + 1."""
    return math.ceil((size - 2) / 2) + 1


@pytest.mark.parametrize(("ceil", "rows", "cols"), [(True, 38, 63), (False, 37, 62)])
def test_conv5_3_of_a_600_by_1000_image_as_the_release_computes_it(ceil, rows, cols):
    with torch.device("meta"):
        backbone = build_vgg16(ModelConfig(backbone="vgg16", pool_ceil=ceil))
        out = backbone.trunk(torch.empty(1, 3, 600, 1000))
    expected = [600, 1000]
    for _ in range(4):  # pool1 to pool4; pool5 is dropped (conv5_3 feeds RoI pooling)
        expected = [_caffe_pool(s) if ceil else s // 2 for s in expected]
    assert expected == [rows, cols]  # 600 -> 300, 150, 75, 38 (Caffe) or 37 (floor)
    assert tuple(out.shape) == (1, 512, rows, cols)
    assert backbone.stride == 16


def test_roi_pooling_keeps_scale_one_sixteenth_and_reaches_the_ceil_row():
    with torch.device("meta"):
        model = FastRCNN(ModelConfig(backbone="vgg16", pool_ceil=True, roi_size=1), 2)
    assert model.stride == 16
    features = torch.arange(38 * 63, dtype=torch.float32).view(1, 1, 38, 63)
    # RoI pooling rounds each corner times 1/16 (as Caffe's ROIPooling): the bottom-left 8x8 px of
    # a 600-px-high image, rows 592..599 -> round(37.0), round(37.44) = feature row 37 only
    roi = torch.tensor([[0.0, 0.0, 592.0, 7.0, 599.0]])
    assert model.pool(features, roi).item() == features[0, 0, 37, 0].item() == 37 * 63
    # x 160..167 -> round(10.0), round(10.44): column 10 only
    roi = torch.tensor([[0.0, 160.0, 0.0, 167.0, 7.0]])
    assert model.pool(features, roi).item() == features[0, 0, 0, 10].item() == 10


@pytest.mark.parametrize("command", ["train", "compare"])
def test_the_paper_preset_without_its_weights_stops_before_any_work(tmp_path, monkeypatch, command):
    from typer.testing import CliRunner

    from ohemcli.cli import app

    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    args = [command, "--config", "voc07_vgg16", "--data", "synth", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "vgg16_caffe.pth not found; run `ohem data download vgg16-caffe`" in result.stderr
    assert not list((tmp_path / "cache").glob("synth*"))  # no data was generated or read
