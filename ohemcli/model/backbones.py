"""Backbones: a conv trunk (images -> feature map) and an fc head (pooled RoIs -> vectors).

``vgg16`` is the paper's network: VGG16 up to conv5_3 (stride 16) with fc6/fc7 as the RoI head,
conv1 and conv2 frozen, in torchvision's layout; its weights come from Caffe's ImageNet model
(``model.pretrained: caffe``, see ohemcli.model.caffe_vgg16) or torchvision's. ``tiny`` is a
small network for the CPU (stride 8). ``resnet18`` is torchvision's ResNet-18 split as Faster
R-CNN splits a ResNet ("C4"): conv1 to layer3 as the trunk (stride 16), layer4 and global average
pooling as the RoI head. ``model.pretrained: torchvision`` starts vgg16 and resnet18 from ImageNet
weights (torchvision's weights API, cached in torch's hub folder); ``shipped`` starts tiny from
``ohemcli/weights/tiny_synth.pt``, a crop classifier of the synthetic shapes trained on images
that the demo never uses (``scripts/pretrain_tiny.py`` reproduces it with
``scripts/pretrain.py``).
"""

from __future__ import annotations

import urllib.error
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ohemcli.config import DEFAULT_FROZEN_CONVS, ModelConfig, pretrained_source
from ohemcli.errors import UserError
from ohemcli.model.caffe_vgg16 import caffe_vgg16_path, load_caffe_vgg16, to_torchvision_vgg16
from ohemcli.model.safe_load import load_safely


@dataclass
class Backbone:
    """The pieces FastRCNN needs from a backbone."""

    trunk: nn.Module  # images (N, 3, H, W) -> features (N, C, H/stride, W/stride)
    head: nn.Module  # pooled RoIs (R, C, S, S) -> (R, out_dim)
    stride: int
    out_dim: int
    channels: int  # the trunk's output channels (the RPN's input under faster-rcnn)


TINY_WEIGHTS = "weights/tiny_synth.pt"  # inside the package: tiny's pretrained trunk and head


def frozen_convs(cfg: ModelConfig) -> int:
    """Leading conv layers of the trunk to freeze: ``model.frozen_convs``, else the backbone's."""
    return DEFAULT_FROZEN_CONVS[cfg.backbone] if cfg.frozen_convs is None else cfg.frozen_convs


def shipped_tiny_weights() -> Path:
    """The path of the pretrained tiny backbone shipped in the package."""
    return Path(str(resources.files("ohemcli").joinpath(TINY_WEIGHTS)))


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: --weights file not found")
    state = load_safely(p, "--weights file")  # weights_only: a user's file never runs code
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UserError(f"{p}: expected a state dict")
    return state


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _torchvision_net(
    build: Callable[..., nn.Module], weights: Any, name: str, ways_out: str, **kw: Any
) -> nn.Module:
    """``build(weights=weights, **kw)``; a failed download of the ImageNet weights (offline, say)
    is one line that names the network and ``ways_out``."""
    try:
        return build(weights=weights, **kw)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise UserError(
            f"--pretrained: cannot download {name} ImageNet weights ({_one_line(exc)}); {ways_out}"
        ) from None


def check_pretrained_available(cfg: ModelConfig) -> None:
    """Refuse, in one line and before any work, ``model.pretrained: caffe`` without its file."""
    if pretrained_source(cfg) != "caffe" or cfg.weights:
        return
    path = caffe_vgg16_path()
    if not path.is_file():
        raise UserError(
            f"model.pretrained caffe: {path} not found; run `ohem data download vgg16-caffe` "
            "(or pass --weights FILE, or --pretrained torchvision)"
        )


def verify_caffe_vgg16(path: Path) -> None:
    """Check that ``path`` loads (weights only) and holds every tensor of Caffe's VGG16 that we
    use, with its shape; one line names the file otherwise. Nothing is allocated for the model
    (torchvision's vgg16 on the meta device)."""
    check_caffe_vgg16_state(_load_state_dict(path), str(path))


def check_caffe_vgg16_state(state: dict[str, torch.Tensor], source: str) -> None:
    """Check that ``state`` holds every tensor of Caffe's VGG16 that we use, with its shape; one
    line names ``source`` otherwise (the model is built on the meta device: nothing allocated)."""
    from torchvision.models import vgg16

    with torch.device("meta"):
        net = vgg16(weights=None)
    load_caffe_vgg16(net, state, source)


def _vgg16_net(cfg: ModelConfig) -> nn.Module:
    """torchvision's ``vgg16`` with the weights ``cfg`` names (``--weights`` first)."""
    from torchvision.models import VGG16_Weights, vgg16

    source = pretrained_source(cfg)
    if source == "torchvision" and not cfg.weights:
        ways_out = "pass --weights FILE (a torchvision vgg16 state dict) or --pretrained none"
        return _torchvision_net(vgg16, VGG16_Weights.IMAGENET1K_V1, "VGG16", ways_out)
    net = vgg16(weights=None)
    if source == "caffe":
        check_pretrained_available(cfg)
        path = Path(cfg.weights) if cfg.weights else caffe_vgg16_path()
        load_caffe_vgg16(net, _load_state_dict(path), str(path))
    elif cfg.weights:  # torchvision's layout (or a caffe one): any part of it
        state = {**_load_state_dict(cfg.weights)}
        state.update(to_torchvision_vgg16(state))
        try:
            missing, _ = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of the wrong shape
            raise UserError(f"{cfg.weights}: does not fit vgg16 ({_one_line(exc)[:300]})") from None
        if len(missing) == len(net.state_dict()):
            raise UserError(f"{cfg.weights}: no tensor matches torchvision's vgg16 (wrong file?)")
    return net


def build_vgg16(cfg: ModelConfig) -> Backbone:
    """VGG16 with conv5_3 at stride 16 and fc6/fc7 as the RoI head.

    ``model.pool_ceil`` makes pool1 to pool4 round their output sizes up, as Caffe's pooling
    does: a 600-px side becomes 300, 150, 75 and then 38 (ceil) instead of 37 rows at conv5_3.
    The stride stays 16, so RoI pooling keeps its spatial scale 1/16, as the release's prototxt.
    """
    net = _vgg16_net(cfg)
    features = cast(nn.Sequential, net.features)  # torchvision's VGG: a Sequential
    trunk = features[:30]  # drop the last max-pool: conv5_3 + ReLU at stride 16
    set_pool_ceil(trunk, cfg.pool_ceil)
    # conv1_x and conv2_x (4 conv layers) stay frozen, as in the paper
    freeze_leading_convs(trunk, frozen_convs(cfg))
    head = nn.Sequential(
        nn.Flatten(), *list(cast(nn.Sequential, net.classifier).children())[:6]
    )  # fc6, fc7 with dropout
    return Backbone(trunk=trunk, head=head, stride=16, out_dim=4096, channels=512)


def set_pool_ceil(trunk: nn.Module, ceil: bool) -> None:
    """Every max-pooling layer of ``trunk`` rounds its output size up (``ceil``) or down."""
    for layer in trunk.modules():
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = ceil


def freeze_leading_convs(trunk: nn.Module, count: int) -> None:
    """Stop gradients to the first ``count`` conv layers of ``trunk`` and the layers after each
    (norm, ReLU, pooling) up to the next conv; a frozen prefix needs no backward pass at all.

    Layers count in the order ``trunk.modules()`` visits them: the order of a Sequential, and for
    a residual block its own convs and then its shortcut's.
    """
    convs = sum(isinstance(m, nn.Conv2d) for m in trunk.modules())
    if count > convs:
        raise UserError(
            f"model.frozen_convs: {count}, but this trunk has {convs} conv layers (--frozen-convs)"
        )
    seen = 0
    for layer in trunk.modules():
        if isinstance(layer, nn.Conv2d):
            seen += 1
            if seen > count:
                break
        for p in layer.parameters(recurse=False):
            p.requires_grad_(False)


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    # GroupNorm, not BatchNorm: batches hold two images, and eval mode must match train mode.
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
    ]


def build_tiny(cfg: ModelConfig) -> Backbone:
    """A five-layer CNN at stride 8 and a two-layer fc head: fast on a CPU.

    Weights: ``cfg.weights`` if given, else the shipped synthetic-shapes weights when
    ``model.pretrained: shipped``, else random (from the caller's torch seed).
    """
    trunk = nn.Sequential(
        *_conv(3, 16, stride=2),
        *_conv(16, 32, stride=2),
        *_conv(32, 48),
        *_conv(48, 64, stride=2),
        *_conv(64, 64),
    )
    pooled = 64 * cfg.roi_size * cfg.roi_size
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(pooled, cfg.head_dim),
        nn.ReLU(inplace=True),
        nn.Linear(cfg.head_dim, cfg.head_dim),
        nn.ReLU(inplace=True),
    )
    shipped = pretrained_source(cfg) == "shipped"
    source = cfg.weights or (shipped_tiny_weights() if shipped else None)
    if source:
        state = _load_state_dict(source)
        try:  # a float16 file is cast to the parameters' float32 by load_state_dict
            nn.Module.load_state_dict(nn.ModuleDict({"trunk": trunk, "head": head}), state)
        except RuntimeError as exc:
            option = "--weights" if cfg.weights else "--pretrained (model.head_dim, model.roi_size)"
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            first = first if len(first) <= 200 else first[:199] + "…"
            raise UserError(
                f"{source}: does not fit the tiny backbone ({first}); check {option} "
                "or use --pretrained none"
            ) from None
    freeze_leading_convs(trunk, frozen_convs(cfg))
    return Backbone(trunk=trunk, head=head, stride=8, out_dim=cfg.head_dim, channels=64)


def _imagenet_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with ImageNet weights, downloaded once into torch's hub folder."""
    from torchvision.models import ResNet18_Weights, resnet18
    from torchvision.ops import FrozenBatchNorm2d

    weights = ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    ways_out = (
        f"pass --weights FILE (a torchvision resnet18 state dict), save {weights.url} as "
        f"{cached}, or use --backbone tiny"
    )
    return _torchvision_net(resnet18, weights, "ResNet18", ways_out, norm_layer=FrozenBatchNorm2d)


def _resnet18_from_file(path: str) -> nn.Module:
    """torchvision's ResNet-18 with a local state dict's weights (its fc layer may be absent)."""
    from torchvision.models import resnet18
    from torchvision.ops import FrozenBatchNorm2d

    net = resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    try:
        missing, _ = net.load_state_dict(_load_state_dict(path), strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise UserError(f"{path}: does not fit torchvision's resnet18 ({_one_line(exc)})") from None
    missing = [k for k in missing if not k.startswith("fc.")]  # the classifier is not used
    if missing:
        raise UserError(
            f"{path}: not a torchvision resnet18 state dict ({len(missing)} tensors missing, "
            f"first {missing[0]})"
        )
    return net


def build_resnet18(cfg: ModelConfig) -> Backbone:
    """ResNet-18, C4 style: conv1 to layer3 at stride 16 (256 channels); layer4 and global
    average pooling over each pooled RoI as the head (512 values).

    Every BatchNorm is a FrozenBatchNorm2d: its statistics and affine stay as loaded, so train and
    eval mode compute the same thing (batches hold two images; the head sees RoIs of them). The
    stem and layer1 stay frozen unless ``model.frozen_convs`` says otherwise (15 trunk convs).
    Weights: ``cfg.weights`` if given, else ImageNet when ``model.pretrained: torchvision``, else
    random (from the caller's torch seed; the frozen BatchNorms are then identities: for tests,
    not training).
    """
    from torchvision.models import resnet18
    from torchvision.ops import FrozenBatchNorm2d

    if cfg.weights:
        net = _resnet18_from_file(cfg.weights)
    elif pretrained_source(cfg) == "torchvision":
        net = _imagenet_resnet18()
    else:
        net = resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    trunk = nn.Sequential(
        OrderedDict(
            (name, getattr(net, name))
            for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
        )
    )
    head = nn.Sequential(
        OrderedDict(
            layer4=cast(nn.Module, net.layer4), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()
        )
    )
    freeze_leading_convs(trunk, frozen_convs(cfg))
    return Backbone(trunk=trunk, head=head, stride=16, out_dim=512, channels=256)


BACKBONES: dict[str, Callable[[ModelConfig], Backbone]] = {
    "vgg16": build_vgg16,
    "tiny": build_tiny,
    "resnet18": build_resnet18,
}


def check_backbone(cfg: ModelConfig) -> None:
    """Build the backbone on PyTorch's meta device (shapes only: no memory, no arithmetic) to
    check the model config before any data work: a ``--weights`` file loads and fits, and
    ``model.frozen_convs`` is within the trunk. ImageNet weights are not downloaded here (their
    download fails in one line when the model is built)."""
    if not cfg.weights and cfg.backbone in ("vgg16", "resnet18"):
        cfg = replace(cfg, pretrained="none")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # "copying into a meta parameter is a no-op": meant
        BACKBONES[cfg.backbone](cfg)
