"""Caffe's VGG16 ImageNet weights (``VGG16.v2.caffemodel``, the OHEM release's starting point) as a
state dict of torchvision's ``vgg16`` layout, and where the file lives.

The converted file that jwyang/faster-rcnn.pytorch ships (``vgg16_caffe.pth``) names its tensors
as torchvision does (``features.0.weight`` ... ``classifier.0.weight``, ``classifier.3.weight``).
Other conversions (jcjohns' ``vgg16-00b39a1b.pth``, used by ruotianluo/pytorch-faster-rcnn) put
fc6 and fc7 at ``classifier.1`` and ``classifier.4``; a file read straight from the caffemodel
(:mod:`ohemcli.model.caffemodel`) keeps Caffe's layer names (``conv1_1``, ``fc6``). All three map
onto the same modules here. The weights expect Caffe's input: BGR, 0-255, minus the mean pixel
(``model.input_norm: caffe``, see ohemcli.data.batching).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ohemcli.errors import UserError
from ohemcli.fileio import cache_dir

CAFFE_FILE = "vgg16_caffe.pth"  # its name in the cache's weights/ folder

# torchvision's vgg16.features index of each conv layer, in Caffe's names.
CONV_INDEX = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
    "conv5_1": 24, "conv5_2": 26, "conv5_3": 28,
}  # fmt: skip
FC_INDEX = {"fc6": 0, "fc7": 3}  # torchvision's vgg16.classifier index (fc8, 1000 classes: unused)


def caffe_vgg16_path() -> Path:
    """Where ``model.pretrained: caffe`` finds its file: ``$OHEM_CACHE/weights/vgg16_caffe.pth``."""
    return cache_dir() / "weights" / CAFFE_FILE


def required_keys() -> list[str]:
    """The torchvision-layout keys a complete conversion holds: 13 convs, fc6 and fc7."""
    layers = [f"features.{i}" for i in CONV_INDEX.values()]
    layers += [f"classifier.{i}" for i in FC_INDEX.values()]
    return [f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")]


def _fc_layout(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """fc6/fc7's classifier index in ``state``: torchvision's (0, 3), or (1, 4) in the older
    layout that put dropout first (no ``classifier.0``, a ``classifier.1`` weight)."""
    if "classifier.0.weight" not in state and "classifier.1.weight" in state:
        return {"fc6": 1, "fc7": 4}
    return dict(FC_INDEX)


def to_torchvision_vgg16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` that are VGG16's conv1_1..conv5_3, fc6 and fc7, under
    torchvision's ``vgg16`` keys (see the module docstring for the layouts read). Others (fc8)
    are left out; a key that is in none of the layouts is ignored."""
    out: dict[str, torch.Tensor] = {}
    fc_at = _fc_layout(state)
    for key, value in state.items():
        layer, _, kind = key.rpartition(".")
        if kind not in ("weight", "bias"):
            continue
        if layer in CONV_INDEX:  # Caffe's names
            out[f"features.{CONV_INDEX[layer]}.{kind}"] = value
        elif layer in FC_INDEX:
            out[f"classifier.{FC_INDEX[layer]}.{kind}"] = value
        elif layer.startswith("features.") and int(layer.split(".")[1]) in CONV_INDEX.values():
            out[key] = value
        elif layer.startswith("classifier."):
            index = int(layer.split(".")[1])
            for name, at in fc_at.items():
                if index == at:
                    out[f"classifier.{FC_INDEX[name]}.{kind}"] = value
    return out


def load_caffe_vgg16(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a Caffe VGG16 ``state`` (any layout above) into torchvision's ``vgg16`` ``net``.

    Every conv and fc6/fc7 must be there with VGG16's shapes; otherwise one line names ``source``
    and the first tensor missing or of the wrong shape.
    """
    mapped = to_torchvision_vgg16(state)
    missing = [k for k in required_keys() if k not in mapped]
    if missing:
        raise UserError(
            f"{source}: not a VGG16 state dict ({len(missing)} of {len(required_keys())} "
            f"tensors missing, first {missing[0]})"
        )
    own = net.state_dict()
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(own[key].shape):
            need = tuple(own[key].shape)
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, VGG16 needs {need}")
    net.load_state_dict(mapped, strict=False)
