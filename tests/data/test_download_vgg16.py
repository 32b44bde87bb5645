"""``ohem data download vgg16-caffe``: md5-checked atomic download, one offline line, the check
that the file holds Caffe's VGG16 (no real download: local file:// URLs and small files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.data import download as download_module
from ohemcli.data.download import download_vgg16_caffe
from ohemcli.errors import UserError
from ohemcli.model import backbones


def _served(tmp_path: Path, payload: bytes) -> tuple[str, str]:
    source = tmp_path / "server" / "vgg16_caffe.pth"
    source.parent.mkdir()
    source.write_bytes(payload)
    return source.as_uri(), hashlib.md5(payload).hexdigest()


def test_downloads_checked_and_keeps_a_good_file(tmp_path: Path) -> None:
    url, md5 = _served(tmp_path, b"weights" * 100)
    dest = tmp_path / "cache" / "weights" / "vgg16_caffe.pth"
    assert download_vgg16_caffe(dest, url, md5, show_progress=False) == dest
    assert dest.read_bytes() == b"weights" * 100
    (tmp_path / "server" / "vgg16_caffe.pth").unlink()  # a rerun needs no server
    assert download_vgg16_caffe(dest, url, md5, show_progress=False) == dest


def test_md5_mismatch_writes_nothing(tmp_path: Path) -> None:
    url, _ = _served(tmp_path, b"weights")
    dest = tmp_path / "cache" / "vgg16_caffe.pth"
    with pytest.raises(UserError, match="md5 mismatch"):
        download_vgg16_caffe(dest, url, "0" * 32, show_progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_file_put_there_by_hand_is_checked_too(tmp_path: Path) -> None:
    dest = tmp_path / "vgg16_caffe.pth"
    dest.write_bytes(b"something else")
    with pytest.raises(UserError, match=r"vgg16_caffe.pth: md5 mismatch .*delete it$"):
        download_vgg16_caffe(dest, "file:///nowhere", "0" * 32, show_progress=False)


def test_offline_is_one_line_saying_where_to_put_the_file(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere" / "vgg16_caffe.pth").as_uri()
    dest = tmp_path / "cache" / "weights" / "vgg16_caffe.pth"
    with pytest.raises(UserError) as info:
        download_vgg16_caffe(dest, url, None, show_progress=False)
    message = str(info.value)
    assert message.startswith(f"cannot download {url}") and "\n" not in message
    assert f"put it at {dest}" in message and "vgg16_caffe.pth?dl=0" in message
    assert not dest.exists()


def test_the_default_source_is_the_published_one() -> None:
    assert download_module.VGG16_CAFFE_URL.startswith("https://zenodo.org/records/4515252/")
    assert len(download_module.VGG16_CAFFE_MD5) == 32


def _serve_as_default(tmp_path: Path, monkeypatch, payload_path: Path) -> None:
    data = payload_path.read_bytes()
    url, md5 = _served(tmp_path, data)
    monkeypatch.setattr(download_module, "VGG16_CAFFE_URL", url)
    monkeypatch.setattr(download_module, "VGG16_CAFFE_MD5", md5)
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))


def test_cli_refuses_a_file_that_is_not_vgg16_in_one_line(tmp_path: Path, monkeypatch) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(2, 3, 3, 3)}, wrong)
    _serve_as_default(tmp_path, monkeypatch, wrong)
    result = CliRunner().invoke(app, ["data", "download", "vgg16-caffe"])
    assert result.exit_code == 2
    dest = tmp_path / "cache" / "weights" / "vgg16_caffe.pth"
    assert f"{dest}: not a VGG16 state dict (29 of 30 tensors missing" in result.output


def test_cli_accepts_a_file_with_every_vgg16_tensor(tmp_path: Path, monkeypatch) -> None:
    small = tmp_path / "small.pth"
    torch.save({"conv1_1.weight": torch.zeros(1)}, small)  # stands for the 530 MB file
    _serve_as_default(tmp_path, monkeypatch, small)
    from torchvision.models import vgg16

    with torch.device("meta"):
        full = vgg16(weights=None).state_dict()  # VGG16's every tensor and shape, no memory
    monkeypatch.setattr(backbones, "_load_state_dict", lambda path: full)
    result = CliRunner().invoke(app, ["data", "download", "vgg16-caffe"])
    assert result.exit_code == 0, result.output
    dest = tmp_path / "cache" / "weights" / "vgg16_caffe.pth"
    assert dest.read_bytes() == small.read_bytes()
    assert f"vgg16-caffe is ready in {dest}; --pretrained caffe finds it" in result.output


def test_cli_voc_sets_still_need_a_root() -> None:
    result = CliRunner().invoke(app, ["data", "download", "voc2007"])
    assert result.exit_code == 2 and "voc2007: give --root" in result.output
