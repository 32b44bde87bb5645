"""The resnet18 backbone with random weights (no download): C4 split, stride, freezing, BN."""

import urllib.error

import pytest
import torch
from torch import nn

from ohemcli.config import ModelConfig
from ohemcli.errors import UserError
from ohemcli.model.backbones import build_resnet18
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index

RANDOM = ModelConfig(backbone="resnet18", pretrained=False)

# The conv layers of conv1..layer3 by name prefix, as torchvision's ResNet-18 defines them:
# the stem has one conv, layer1 four, layer2 and layer3 four each plus a 1x1 shortcut conv.
STAGE_PREFIXES = ["conv1.", "layer1.", "layer2.", "layer3."]
STAGE_END = {0: 0, 1: 1, 5: 2, 10: 3, 15: 4}  # frozen_convs -> stages wholly frozen


def _random_bn_statistics(module: nn.Module, seed: int = 0) -> None:
    """Give every frozen BatchNorm statistics and an affine that are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    for name, buf in module.named_buffers():
        if name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
        elif name.endswith(("running_mean", "bias")):
            buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
        elif name.endswith("weight"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)


def test_resnet18_is_c4_with_stride_16_and_256_channels():
    torch.manual_seed(0)
    backbone = build_resnet18(RANDOM)
    assert backbone.stride == 16 and backbone.out_dim == 512
    assert list(dict(backbone.trunk.named_children())) == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"
    ]  # fmt: skip
    with torch.no_grad():
        features = backbone.trunk(torch.randn(1, 3, 320, 480))
        assert features.shape == (1, 256, 20, 30)
        assert backbone.head(torch.randn(5, 256, 7, 7)).shape == (5, 512)


@pytest.mark.parametrize("count", [None, 0, 1, 5, 10, 15])
def test_frozen_convs_freezes_whole_stages_of_the_trunk_and_never_the_head(count):
    backbone = build_resnet18(ModelConfig(backbone="resnet18", frozen_convs=count))
    stages = STAGE_END[5 if count is None else count]  # None: the stem and layer1
    frozen = {n for n, p in backbone.trunk.named_parameters() if not p.requires_grad}
    expected = {
        n
        for n, _ in backbone.trunk.named_parameters()
        if n.startswith(tuple(STAGE_PREFIXES[:stages]))
    }
    assert frozen == expected
    assert all(p.requires_grad for p in backbone.head.parameters())


def test_frozen_convs_counts_the_shortcut_conv_after_the_blocks_convs():
    trunk = build_resnet18(ModelConfig(backbone="resnet18", frozen_convs=7)).trunk
    frozen = {n.rsplit(".", 1)[0] for n, p in trunk.named_parameters() if not p.requires_grad}
    assert {n for n in frozen if n.startswith("layer2")} == {"layer2.0.conv1", "layer2.0.conv2"}
    with pytest.raises(UserError, match=r"model.frozen_convs: 16, but this trunk has 15 conv"):
        build_resnet18(ModelConfig(backbone="resnet18", frozen_convs=16))


def test_batchnorm_is_frozen_and_train_mode_computes_what_eval_mode_does():
    torch.manual_seed(0)
    model = FastRCNN(RANDOM, num_classes=3)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any("bn" in n or "downsample.1" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        _random_bn_statistics(model)
    before = {n: b.clone() for n, b in model.named_buffers()}
    images = torch.randn(2, 3, 64, 96)
    rois = rois_with_batch_index([torch.tensor([[0.0, 0.0, 40.0, 30.0]])] * 2)
    model.eval()
    with torch.no_grad():
        expected = model.roi_forward(model.features(images), rois)
    model.train()
    with torch.no_grad():
        got = model.roi_forward(model.features(images), rois)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_a_training_pass_through_fast_rcnn_reaches_the_trainable_layers_only():
    torch.manual_seed(0)
    model = FastRCNN(RANDOM, num_classes=3).train()
    gen = torch.Generator().manual_seed(1)
    xy = torch.rand(128, 2, generator=gen) * torch.tensor([400.0, 250.0])
    wh = torch.rand(128, 2, generator=gen) * 60 + 16
    rois = rois_with_batch_index(
        [torch.cat([xy, xy + wh], 1)[:64], torch.cat([xy, xy + wh], 1)[64:]]
    )
    labels = torch.randint(0, 4, (128,), generator=gen)
    targets = torch.randn(128, 4, generator=gen) * (labels > 0).unsqueeze(1)
    features = model.features(torch.randn(2, 3, 320, 480, generator=gen))
    losses = model.roi_losses(features, rois, labels, targets)
    assert losses.cls.shape == (128,) and torch.isfinite(losses.cls + losses.box).all()
    (losses.cls + losses.box).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "layer4" in n)
    assert grads["trunk.layer3.1.conv2.weight"].abs().sum() > 0
    assert grads["cls_score.weight"].abs().sum() > 0
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("trunk.conv1", "trunk.layer1")) for n in frozen)


def test_resnet18_offline_download_is_one_line_naming_the_ways_out(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError) as err:
        build_resnet18(ModelConfig(backbone="resnet18", pretrained=True))
    message = str(err.value)
    assert "--weights FILE" in message and "--backbone tiny" in message
    assert "resnet18-f37072fd.pth" in message and "\n" not in message


def test_resnet18_loads_a_torchvision_state_dict_with_its_batchnorm_statistics(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    source = resnet18(weights=None)  # ordinary BatchNorm2d: its file has num_batches_tracked
    with torch.no_grad():
        _random_bn_statistics(source, seed=4)
        for bn in (m for m in source.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.copy_(torch.rand(bn.weight.shape) + 0.5)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(5)
    loaded = build_resnet18(ModelConfig(backbone="resnet18", weights=str(path)))
    assert torch.equal(loaded.trunk.conv1.weight, source.conv1.weight)
    assert torch.equal(loaded.trunk.layer3[1].bn2.running_var, source.layer3[1].bn2.running_var)
    assert torch.equal(loaded.trunk.layer3[1].bn2.weight, source.layer3[1].bn2.weight)
    assert torch.equal(loaded.head.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    source.eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = source.layer3(source.layer2(source.layer1(source.maxpool(
            source.relu(source.bn1(source.conv1(image)))))))  # fmt: skip
        # FrozenBatchNorm2d folds the statistics into a scale and a shift: equal up to rounding
        assert torch.allclose(loaded.trunk(image), expected, rtol=1e-4, atol=1e-4)


def test_resnet18_refuses_a_file_of_another_network(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(UserError, match=r"other.pt: not a torchvision resnet18 state dict"):
        build_resnet18(ModelConfig(backbone="resnet18", weights=str(path)))
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(UserError, match=r"other.pt: does not fit torchvision's resnet18"):
        build_resnet18(ModelConfig(backbone="resnet18", weights=str(path)))
