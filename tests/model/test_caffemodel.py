"""The .caffemodel reader on tiny files written here byte by byte (protobuf wire format, with the
field numbers of Caffe's caffe.proto), in the current and the V1 layer format."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.errors import UserError
from ohemcli.model import backbones
from ohemcli.model.caffe_vgg16 import to_torchvision_vgg16
from ohemcli.model.caffemodel import read_caffemodel


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _blob(values: np.ndarray, legacy: bool = False) -> bytes:
    """BlobProto: shape = 7 (BlobShape dim = 1, packed) or num/channels/height/width = 1..4, and
    data = 5 (packed float)."""
    if legacy:
        dims = (1,) * (4 - values.ndim) + values.shape
        head = b"".join(_int_field(i + 1, d) for i, d in enumerate(dims))
    else:
        head = _field(7, _field(1, b"".join(_varint(d) for d in values.shape)))
    return head + _field(5, values.astype("<f4").tobytes())


def _layer(name: str, blobs: list[bytes], v1: bool = False) -> bytes:
    """LayerParameter (name = 1, type = 2, blobs = 7) or V1LayerParameter (name = 4, type = 5 an
    enum, blobs = 6), wrapped as NetParameter field 100 or 2."""
    if v1:
        body = _field(4, name.encode()) + _int_field(5, 4) + b"".join(_field(6, b) for b in blobs)
        return _field(2, body)
    body = _field(1, name.encode()) + _field(2, b"Convolution")
    return _field(100, body + b"".join(_field(7, b) for b in blobs))


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv1_1.weight": rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
        "conv1_1.bias": rng.standard_normal(2).astype(np.float32),
        "fc6.weight": rng.standard_normal((4, 5)).astype(np.float32),
        "fc6.bias": rng.standard_normal(4).astype(np.float32),
    }


@pytest.mark.parametrize("v1", [False, True])
def test_reads_every_layers_weight_and_bias_exactly(tmp_path: Path, tensors, v1) -> None:
    net = _field(1, b"VGG_ILSVRC_16_layers")  # NetParameter.name: skipped
    net += _layer("data", [], v1)  # a layer without blobs adds nothing
    net += _layer("conv1_1", [_blob(tensors["conv1_1.weight"]), _blob(tensors["conv1_1.bias"])], v1)
    net += _layer("relu1_1", [], v1)
    # fc6 in the legacy 4-D blob fields: (1, 1, 4, 5) and (1, 1, 1, 4)
    fc6 = [_blob(tensors["fc6.weight"], legacy=True), _blob(tensors["fc6.bias"], legacy=True)]
    net += _layer("fc6", fc6, v1)
    path = tmp_path / "tiny.caffemodel"
    path.write_bytes(net)
    state = read_caffemodel(path)
    assert sorted(state) == sorted(tensors)
    for key, value in tensors.items():
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], torch.from_numpy(value)), key
    assert set(to_torchvision_vgg16(state)) == {
        "features.0.weight", "features.0.bias", "classifier.0.weight", "classifier.0.bias"
    }  # fmt: skip


def test_a_file_that_is_not_a_caffemodel_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(_field(100, _field(7, _field(5, b"\x00\x00\x80"))))  # 3 bytes of a float
    with pytest.raises(UserError, match=r"bad.caffemodel: not a Caffe model"):
        read_caffemodel(path)
    path.write_bytes(b"\x0b")  # wire type 3 (a group): not in caffe.proto
    with pytest.raises(UserError, match=r"bad.caffemodel: not a Caffe model"):
        read_caffemodel(path)
    with pytest.raises(UserError, match=r"absent.caffemodel: cannot read"):
        read_caffemodel(tmp_path / "absent.caffemodel")


def test_a_blob_whose_shape_and_data_disagree_is_refused(tmp_path: Path) -> None:
    blob = _field(7, _field(1, _varint(3))) + _field(5, struct.pack("<2f", 1.0, 2.0))
    path = tmp_path / "short.caffemodel"
    path.write_bytes(_layer("conv1_1", [blob]))
    with pytest.raises(UserError, match=r"blob of shape \[3\] holds 2 values"):
        read_caffemodel(path)


def test_cli_converts_a_caffemodel_into_the_cache(tmp_path: Path, monkeypatch, tensors) -> None:
    net = _layer("conv1_1", [_blob(tensors["conv1_1.weight"]), _blob(tensors["conv1_1.bias"])])
    source = tmp_path / "VGG16.v2.caffemodel"
    source.write_bytes(net)
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    seen = {}
    monkeypatch.setattr(backbones, "load_caffe_vgg16", lambda net, state, src: seen.update(state))
    result = CliRunner().invoke(
        app, ["data", "download", "vgg16-caffe", "--caffemodel", str(source)]
    )
    assert result.exit_code == 0, result.output
    dest = tmp_path / "cache" / "weights" / "vgg16_caffe.pth"
    saved = torch.load(dest, weights_only=True)
    assert torch.equal(saved["conv1_1.weight"], torch.from_numpy(tensors["conv1_1.weight"]))
    assert set(seen) == {"conv1_1.weight", "conv1_1.bias"}  # what the VGG16 check was given


@pytest.mark.parametrize("kind", ["too few layers", "empty", "zero-size dims"])
def test_a_refused_caffemodel_leaves_the_cached_weights_alone(
    tmp_path: Path, monkeypatch, tensors, kind
) -> None:
    """The conversion is checked before it replaces anything: the good file stays byte for byte."""
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "cache" / "weights" / "vgg16_caffe.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"the good weights, downloaded earlier")
    bad = {
        "too few layers": _layer(
            "conv1_1", [_blob(tensors["conv1_1.weight"]), _blob(tensors["conv1_1.bias"])]
        ),
        "empty": b"",
        "zero-size dims": _layer("conv1_1", [_blob(np.zeros((0, 3, 3, 3), np.float32))]),
    }[kind]
    source = tmp_path / "bad.caffemodel"
    source.write_bytes(bad)
    result = CliRunner().invoke(
        app, ["data", "download", "vgg16-caffe", "--caffemodel", str(source)]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert dest.read_bytes() == b"the good weights, downloaded earlier"
    assert [p.name for p in dest.parent.iterdir()] == ["vgg16_caffe.pth"]  # no temp file left


@pytest.mark.parametrize("field", [5, 8])
def test_float_data_encoded_as_a_varint_is_one_line(tmp_path: Path, field: int) -> None:
    # A hostile writer may give the float (5) or double (8) data field wire type 0: its value is
    # then an int, which numpy cannot read as a buffer.
    blob = _field(7, _field(1, _varint(1))) + _int_field(field, 7)
    path = tmp_path / "varint.caffemodel"
    path.write_bytes(_layer("conv1_1", [blob]))
    with pytest.raises(UserError, match=rf"varint.caffemodel: not a Caffe model .*field {field}"):
        read_caffemodel(path)
