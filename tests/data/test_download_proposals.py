"""The Fast R-CNN release's proposals: download from a file:// URL, md5, lookup and fallback."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.data import download as download_module
from ohemcli.data.download import download_voc2007_proposals
from ohemcli.data.proposals import load as proposals_module
from ohemcli.data.proposals.load import SELECTIVE_SEARCH, load_proposals, resolve_source
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError
from tests.data.bad_voc import make_root

# One image, boxes in the release's layout: y1 x1 y2 x2, 1-based. Three distinct boxes.
RELEASE_BOXES = np.array([[2, 1, 40, 30], [5, 5, 20, 20], [1, 1, 48, 64]], dtype=np.float64)


def _mat_bytes(boxes_per_image: list[np.ndarray]) -> bytes:
    cells = np.empty((1, len(boxes_per_image)), dtype=object)
    for i, boxes in enumerate(boxes_per_image):
        cells[0, i] = boxes
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"boxes": cells})
    return buffer.getvalue()


def make_tgz(path: Path) -> tuple[str, str]:
    """A small selective_search_data.tgz; returns (file:// URL, md5)."""
    with tarfile.open(path, "w:gz") as tar:
        for name in ("voc_2007_trainval", "voc_2007_test", "voc_2012_train"):
            data = _mat_bytes([RELEASE_BOXES])
            info = tarfile.TarInfo(f"selective_search_data/{name}.mat")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def tgz(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "server").mkdir()
    return make_tgz(tmp_path / "server" / "selective_search_data.tgz")


def test_downloads_and_unpacks_only_voc2007(tmp_path: Path, tgz: tuple[str, str]) -> None:
    url, md5 = tgz
    out = download_voc2007_proposals(tmp_path / "data", url, md5, show_progress=False)
    assert out == tmp_path / "data" / "selective_search_data"
    assert sorted(p.name for p in out.iterdir()) == ["voc_2007_test.mat", "voc_2007_trainval.mat"]
    assert not (tmp_path / "data" / "selective_search_data.tgz").exists()  # deleted when done
    # A rerun finds the files and needs no server.
    (tmp_path / "server" / "selective_search_data.tgz").unlink()
    assert download_voc2007_proposals(tmp_path / "data", url, md5, show_progress=False) == out


def test_md5_mismatch_leaves_nothing(tmp_path: Path, tgz: tuple[str, str]) -> None:
    url, _ = tgz
    with pytest.raises(UserError, match="md5 mismatch"):
        download_voc2007_proposals(tmp_path / "data", url, "0" * 32, show_progress=False)
    assert list((tmp_path / "data").rglob("*")) == []


def test_offline_is_one_line(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere" / "selective_search_data.tgz").as_uri()
    with pytest.raises(UserError) as info:
        download_voc2007_proposals(tmp_path / "data", url, None, show_progress=False)
    message = str(info.value)
    assert message.startswith(f"cannot download {url}") and "\n" not in message
    assert str(tmp_path / "data" / "selective_search_data.tgz") in message  # where to put it
    assert not (tmp_path / "data" / "selective_search_data").exists()


def test_cli_download(tmp_path: Path, tgz: tuple[str, str], monkeypatch) -> None:
    url, md5 = tgz
    monkeypatch.setattr(download_module, "PROPOSALS_URL", url)
    monkeypatch.setattr(download_module, "PROPOSALS_MD5", md5)
    root = tmp_path / "data"
    result = CliRunner().invoke(app, ["data", "download", "voc2007-proposals", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / "selective_search_data" / "voc_2007_test.mat").is_file()


def _voc2007_root(base: Path) -> Path:
    """A one-image root at base/VOCdevkit/VOC2007, with its split also named 'test'."""
    root, _ = make_root(base / "tmp")
    voc = base / "VOCdevkit" / "VOC2007"
    voc.parent.mkdir(parents=True)
    root.rename(voc)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("a\n")
    return voc


def test_release_boxes_found_next_to_the_root_and_all_kept(
    tmp_path: Path, tgz: tuple[str, str]
) -> None:
    voc = _voc2007_root(tmp_path / "data")
    download_voc2007_proposals(tmp_path / "data", *tgz, show_progress=False)
    source = resolve_source("release", voc, "test")
    assert source == str(tmp_path / "data" / "selective_search_data" / "voc_2007_test.mat")
    boxes = load_proposals(VOCDataset(voc, "test"), source, max_boxes=0)["a"]
    # y1 x1 y2 x2 1-based -> x1 y1 x2 y2 0-based; the last box is clipped to the 64 x 48 image.
    np.testing.assert_array_equal(boxes, [[0, 1, 29, 39], [4, 4, 19, 19], [0, 0, 63, 47]])
    assert len(load_proposals(VOCDataset(voc, "test"), source, max_boxes=2)["a"]) == 2


def test_release_fallback_says_so_once(tmp_path: Path, caplog) -> None:
    voc = _voc2007_root(tmp_path / "data")
    proposals_module._fallback_noted.clear()
    logger = logging.getLogger("ohemcli")
    logger.addHandler(caplog.handler)
    try:
        assert resolve_source("release", voc, "trainval") == SELECTIVE_SEARCH
        assert resolve_source("release", voc, "test") == SELECTIVE_SEARCH
    finally:
        logger.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "ohem data download voc2007-proposals" in lines[0]
    assert "\n" not in lines[0]


def test_release_only_for_a_voc2007_root(tmp_path: Path, tgz: tuple[str, str]) -> None:
    root, _ = make_root(tmp_path / "data")  # named 'root', next to the release's files
    download_voc2007_proposals(tmp_path, *tgz, show_progress=False)
    proposals_module._fallback_noted.add(str(root))  # keep the test's output quiet
    assert resolve_source("release", root, "trainval") == SELECTIVE_SEARCH
    assert resolve_source("dir/voc_2007_{split}.mat", root, "test") == "dir/voc_2007_test.mat"
