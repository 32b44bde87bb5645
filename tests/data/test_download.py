"""VOC2007 download: local tars through file:// URLs, md5 checks, unsafe tars, no network."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from ohemcli.data.download import download_voc2007
from ohemcli.errors import UserError


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tar(path: Path, split: str, ids: list[str]) -> tuple[str, str]:
    """A small VOC-style tar; returns (file:// URL, md5)."""
    with tarfile.open(path, "w") as tar:
        base = "VOCdevkit/VOC2007"
        _add(tar, f"{base}/ImageSets/Main/{split}.txt", "".join(f"{i}\n" for i in ids).encode())
        for i in ids:
            _add(tar, f"{base}/Annotations/{i}.xml", b"<annotation/>")
            _add(tar, f"{base}/JPEGImages/{i}.jpg", b"\xff\xd8 not really a jpeg")
    return path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def tars(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "server").mkdir()
    trainval = make_tar(tmp_path / "server" / "VOCtrainval.tar", "trainval", ["000005", "000007"])
    test = make_tar(tmp_path / "server" / "VOCtest.tar", "test", ["000001"])
    return dict([trainval, test])


def test_downloads_and_unpacks(tmp_path: Path, tars: dict[str, str]) -> None:
    voc = download_voc2007(tmp_path / "root", urls=tars, show_progress=False)
    assert voc == tmp_path / "root" / "VOCdevkit" / "VOC2007"
    assert (voc / "ImageSets" / "Main" / "trainval.txt").read_text() == "000005\n000007\n"
    assert (voc / "ImageSets" / "Main" / "test.txt").read_text() == "000001\n"
    assert (voc / "Annotations" / "000001.xml").read_bytes() == b"<annotation/>"
    assert (tmp_path / "root" / "VOCtest.tar").is_file()
    # A rerun skips finished work: it no longer needs the server.
    for source in (tmp_path / "server").iterdir():
        source.unlink()
    assert download_voc2007(tmp_path / "root", urls=tars, show_progress=False) == voc


def test_md5_mismatch_writes_nothing(tmp_path: Path, tars: dict[str, str]) -> None:
    url = next(iter(tars))
    with pytest.raises(UserError, match="md5 mismatch") as info:
        download_voc2007(tmp_path / "root", urls={url: "0" * 32}, show_progress=False)
    assert url in str(info.value)
    assert [p for p in (tmp_path / "root").rglob("*")] == []


def test_md5_is_optional(tmp_path: Path, tars: dict[str, str]) -> None:
    urls = {url: None for url in tars}
    voc = download_voc2007(tmp_path / "root", urls=urls, show_progress=False)
    assert (voc / "JPEGImages" / "000007.jpg").is_file()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_refuses_members_escaping_the_root(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        if kind == "symlink":
            link = tarfile.TarInfo("VOCdevkit/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
        else:
            _add(tar, "../evil.txt" if kind == "dotdot" else "/tmp/evil.txt", b"x")
    with pytest.raises(UserError, match="refused member") as info:
        download_voc2007(tmp_path / "root", urls={path.as_uri(): None}, show_progress=False)
    assert str(tmp_path / "root" / "evil.tar") in str(info.value)
    assert not (tmp_path / "evil.txt").exists()
    assert [p for p in (tmp_path / "root").rglob("*")] == []


def test_unreachable_url_is_one_line_user_error(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/VOCtest_06-Nov-2007.tar"  # port 9 (discard): closed on loopback
    with pytest.raises(UserError) as info:
        download_voc2007(tmp_path / "root", urls={url: None}, show_progress=False)
    message = str(info.value)
    assert message.startswith(f"cannot download {url}: ")
    assert message.endswith("(no network? download it elsewhere and pass --data ROOT)")
    assert "\n" not in message
    assert not (tmp_path / "root").exists()


def test_missing_local_file_is_a_user_error(tmp_path: Path) -> None:
    url = (tmp_path / "absent.tar").as_uri()
    with pytest.raises(UserError, match="cannot download"):
        download_voc2007(tmp_path / "root", urls={url: None}, show_progress=False)
