"""Backbones: offline weight download fails with one line; local weights load."""

import urllib.error

import pytest
import torch

from ohemcli.config import ModelConfig
from ohemcli.errors import UserError
from ohemcli.model.backbones import build_tiny, build_vgg16


def test_vgg16_offline_download_is_one_line_suggesting_alternatives(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError) as err:
        build_vgg16(ModelConfig(backbone="vgg16", pretrained=True))
    message = str(err.value)
    assert "--weights" in message and "--pretrained none" in message
    assert "\n" not in message


def test_vgg16_is_stride_16_with_frozen_conv1_and_conv2():
    backbone = build_vgg16(ModelConfig(backbone="vgg16", pretrained=False))
    assert backbone.stride == 16 and backbone.out_dim == 4096
    convs = [m for m in backbone.trunk if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    assert [all(not p.requires_grad for p in c.parameters()) for c in convs[:4]] == [True] * 4
    assert all(p.requires_grad for c in convs[4:] for p in c.parameters())
    out = backbone.trunk(torch.zeros(1, 3, 64, 96))
    assert out.shape == (1, 512, 4, 6)


def test_tiny_loads_a_local_state_dict(tmp_path):
    cfg = ModelConfig(backbone="tiny")
    torch.manual_seed(0)
    source = build_tiny(cfg)
    state = {f"trunk.{k}": v for k, v in source.trunk.state_dict().items()}
    state.update({f"head.{k}": v for k, v in source.head.state_dict().items()})
    path = tmp_path / "tiny.pt"
    torch.save(state, path)
    torch.manual_seed(1)
    loaded = build_tiny(ModelConfig(backbone="tiny", weights=str(path)))
    for a, b in zip(source.trunk.parameters(), loaded.trunk.parameters(), strict=True):
        assert torch.equal(a, b)


def test_missing_weights_file_names_the_file(tmp_path):
    with pytest.raises(UserError, match="nope.pt"):
        build_tiny(ModelConfig(backbone="tiny", weights=str(tmp_path / "nope.pt")))


def _frozen_flags(trunk: torch.nn.Module) -> list[bool]:
    """Per conv layer of ``trunk``: True when none of its parameters takes gradients."""
    convs = [m for m in trunk if isinstance(m, torch.nn.Conv2d)]
    return [all(not p.requires_grad for p in c.parameters()) for c in convs]


@pytest.mark.parametrize("count", [0, 2, 4, 5])
def test_tiny_freezes_exactly_the_leading_convs_and_their_norms(count):
    trunk = build_tiny(ModelConfig(backbone="tiny", frozen_convs=count)).trunk
    assert _frozen_flags(trunk) == [True] * count + [False] * (5 - count)
    norms = [m for m in trunk if isinstance(m, torch.nn.GroupNorm)]
    assert [all(not p.requires_grad for p in n.parameters()) for n in norms] == _frozen_flags(trunk)


def test_frozen_convs_sets_vgg16s_frozen_prefix_and_checks_the_count():
    trunk = build_vgg16(ModelConfig(backbone="vgg16", frozen_convs=7)).trunk
    assert _frozen_flags(trunk) == [True] * 7 + [False] * 6
    with pytest.raises(UserError, match=r"model.frozen_convs: 6, but this trunk has 5 conv"):
        build_tiny(ModelConfig(backbone="tiny", frozen_convs=6))


def test_a_frozen_prefix_keeps_its_weights_through_an_update():
    torch.manual_seed(0)
    backbone = build_tiny(ModelConfig(backbone="tiny", frozen_convs=4))
    before = [p.detach().clone() for p in backbone.trunk.parameters()]
    params = [p for p in backbone.trunk.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    backbone.trunk(torch.randn(2, 3, 32, 48)).square().mean().backward()
    opt.step()
    after = list(backbone.trunk.parameters())
    changed = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
    # conv weight + GroupNorm weight and bias per layer: 4 frozen layers, then 1 trained
    assert changed == [False] * 12 + [True] * 3


@pytest.mark.parametrize("backbone, convs", [("tiny", 5), ("vgg16", 13), ("resnet18", 15)])
def test_check_backbone_refuses_frozen_convs_beyond_the_trunk(backbone, convs):
    from ohemcli.model.backbones import check_backbone

    check_backbone(ModelConfig(backbone=backbone, frozen_convs=convs))  # all of them: fine
    with pytest.raises(UserError, match=f"model.frozen_convs: {convs + 1}, but this trunk has"):
        check_backbone(ModelConfig(backbone=backbone, frozen_convs=convs + 1))


def test_check_backbone_refuses_a_weights_file_that_does_not_fit(tmp_path):
    from ohemcli.model.backbones import check_backbone

    path = tmp_path / "w.pt"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, path)  # vgg16's is 64 x 3 x 3 x 3
    with pytest.raises(UserError, match=r"w\.pt: does not fit vgg16") as info:
        check_backbone(ModelConfig(backbone="vgg16", weights=str(path)))
    assert "\n" not in str(info.value)
    torch.save({"trunk.0.weight": torch.zeros(8, 3, 3, 3)}, path)  # tiny's is 16 x 3 x 3 x 3
    with pytest.raises(UserError, match=r"w\.pt: does not fit the tiny backbone"):
        check_backbone(ModelConfig(backbone="tiny", weights=str(path)))
    check_backbone(ModelConfig(backbone="tiny", pretrained=True))  # the shipped weights fit
