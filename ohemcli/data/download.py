"""Download PASCAL VOC2007, the Fast R-CNN release's proposals and Caffe's VGG16 (stdlib only).

Each tar is streamed into a temporary file next to its target, its md5 checked on the way, and
renamed into place only when complete and verified. Unpacking refuses members that would land
outside the root (absolute paths, ``..``, links, devices) and uses tarfile's ``"data"`` filter
where Python has it. A marker file written after each tar is unpacked lets a rerun skip finished
work and redo an interrupted extraction.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlparse

from rich.progress import DownloadColumn, TransferSpeedColumn

from ohemcli.errors import UserError
from ohemcli.fileio import atomic_write, atomic_write_text
from ohemcli.progress import make_progress

_VOC_BASE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
# url -> md5 (None: not verified). The md5s are the published ones of the 2007 release.
VOC2007_URLS: dict[str, str | None] = {
    f"{_VOC_BASE}/VOCtrainval_06-Nov-2007.tar": "c52e279531787c972589f7e41ab4ae64",
    f"{_VOC_BASE}/VOCtest_06-Nov-2007.tar": "b6e924de25625d8de591ea690078ad9f",
}
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
_CHUNK = 1 << 20
_TIMEOUT_S = 60


_HINT = "download it elsewhere and pass --data ROOT"


def _offline_error(url: str, exc: BaseException, hint: str = _HINT) -> UserError:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    text = " ".join(str(reason).split())  # one line, whatever the OS put in the message
    return UserError(f"cannot download {url}: {text} (no network? {hint})")


def fetch(
    url: str, dest: Path, md5: str | None, show_progress: bool = True, hint: str = _HINT
) -> Path:
    """Download ``url`` to ``dest`` atomically, checking ``md5`` when given.

    Nothing is written when the URL cannot be opened, and a corrupt or interrupted download never
    appears under ``dest``.
    """
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _offline_error(url, exc, hint) from None

    def write(tmp: Path) -> None:
        digest = hashlib.md5()
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (DownloadColumn(), TransferSpeedColumn())
        with open(tmp, "wb") as f, make_progress(*columns, disable=not show_progress) as bar:
            task = bar.add_task(f"download {dest.name}", total=total)
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                bar.advance(task, len(chunk))
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise UserError(
                f"{url}: md5 mismatch (got {digest.hexdigest()}, expected {md5}); "
                "the download is corrupt, run the command again"
            )

    with response:
        try:
            atomic_write(dest, write)
        except _NETWORK_ERRORS as exc:
            raise _offline_error(url, exc, hint) from None
    return dest


def _check_members(tar: tarfile.TarFile, tar_path: Path) -> list[tarfile.TarInfo]:
    """The members of ``tar``, refusing any that could write outside the extraction root."""
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or ".." in parts or ":" in (parts[0] if parts else ""):
            raise UserError(f"{tar_path}: refused member '{m.name}' (it escapes the root)")
        if not (m.isfile() or m.isdir()):
            raise UserError(f"{tar_path}: refused member '{m.name}' (links and devices)")
    return members


def extract(tar_path: Path, root: Path) -> None:
    """Unpack ``tar_path`` into ``root`` safely (see the module docstring)."""
    try:
        with tarfile.open(tar_path) as tar:
            members = _check_members(tar, tar_path)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12
                tar.extractall(root, members=members, filter="data")
            else:
                tar.extractall(root, members=members)  # members checked above
    except tarfile.TarError as exc:
        raise UserError(f"{tar_path}: cannot unpack ({exc})") from None


def download_voc2007(
    root: Path, urls: dict[str, str | None] | None = None, show_progress: bool = True
) -> Path:
    """Download and unpack VOC2007 trainval and test under ``root``; return the VOC2007 root.

    ``urls`` maps each tar's URL to its md5 (or None to skip the check); it defaults to
    ``VOC2007_URLS`` and may use ``file://`` URLs. Finished steps are skipped on a rerun.
    """
    root = Path(root).expanduser()
    urls = VOC2007_URLS if urls is None else urls
    for url, md5 in urls.items():
        name = PurePosixPath(urlparse(url).path).name or "download.tar"
        tar_path, done = root / name, root / f".{name}.unpacked"
        if done.is_file():
            continue
        if not tar_path.is_file():  # present only when complete and verified: renamed last
            fetch(url, tar_path, md5, show_progress)
        try:
            extract(tar_path, root)
        except UserError:
            tar_path.unlink()  # refused or unreadable: do not keep it around for the next run
            raise
        atomic_write_text(done, f"{url}\n")
    voc = root / "VOCdevkit" / "VOC2007"
    if not voc.is_dir():
        raise UserError(f"{root}: the archives held no VOCdevkit/VOC2007 folder")
    return voc


# The Fast R-CNN release's selective search boxes (fast-rcnn's
# data/scripts/fetch_selective_search_data.sh gives the md5; the Berkeley URL there is gone).
PROPOSALS_URL = "https://dl.dropboxusercontent.com/s/orrt7o6bp6ae0tc/selective_search_data.tgz?dl=0"
PROPOSALS_MD5 = "7078c1db87a7851b31966b96774cd9b9"
PROPOSALS_DIR = "selective_search_data"  # the folder the release's .mat files live in
PROPOSALS_SPLITS = ("trainval", "test")  # the files we need; others of VOC2007 come along


def _unpack_voc2007_mats(tgz: Path, out_dir: Path) -> list[Path]:
    """Write every ``voc_2007_*.mat`` member of ``tgz`` into ``out_dir``, each atomically."""
    written = []
    try:
        with tarfile.open(tgz) as tar:
            for member in _check_members(tar, tgz):
                name = PurePosixPath(member.name).name
                if not (member.isfile() and name.startswith("voc_2007_") and name.endswith(".mat")):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source:
                    atomic_write(out_dir / name, functools.partial(_copy, source))
                written.append(out_dir / name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{tgz}: cannot unpack ({exc})") from None
    return written


def _check_md5(path: Path, md5: str | None) -> None:
    if md5 is None:
        return
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != md5.lower():
        raise UserError(
            f"{path}: md5 mismatch (got {digest.hexdigest()}, expected {md5}); delete it"
        )  # a partial download never lands there (atomic): the file came by hand


def _copy(source: IO[bytes], dest: Path) -> None:
    with open(dest, "wb") as f:
        while chunk := source.read(_CHUNK):
            f.write(chunk)


def download_voc2007_proposals(
    root: Path,
    url: str | None = None,
    md5: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Fetch the Fast R-CNN release's selective search boxes; return ``root/selective_search_data``.

    The archive (about 0.5 GB, md5-checked) is downloaded atomically, its ``voc_2007_*.mat`` files
    are written into ``root/selective_search_data/`` (each atomically), and the archive is deleted.
    A rerun with the files present does nothing. Without ``url``: ``PROPOSALS_URL`` checked
    against ``PROPOSALS_MD5``; with it, ``md5`` (None: not checked).
    """
    if url is None:
        url, md5 = PROPOSALS_URL, PROPOSALS_MD5
    root = Path(root).expanduser()
    out_dir = root / PROPOSALS_DIR
    wanted = [out_dir / f"voc_2007_{split}.mat" for split in PROPOSALS_SPLITS]
    if all(p.is_file() for p in wanted):
        return out_dir
    tgz = root / (PurePosixPath(urlparse(url).path).name or "selective_search_data.tgz")
    if tgz.is_file():  # put there by hand (ours are deleted after unpacking): check it too
        _check_md5(tgz, md5)
    else:
        hint = f"download it elsewhere and put it at {tgz}, then run this again"
        fetch(url, tgz, md5, show_progress, hint)
    try:
        _unpack_voc2007_mats(tgz, out_dir)
    except UserError:
        tgz.unlink()
        raise
    missing = [p.name for p in wanted if not p.is_file()]
    if missing:
        tgz.unlink()
        raise UserError(f"{url}: the archive holds no {', '.join(missing)}")
    tgz.unlink()  # the .mat files are all we use; the archive also holds VOC2012's boxes
    return out_dir


# Caffe's VGG16 ImageNet weights (VGG16.v2.caffemodel, the OHEM release's starting point) as the
# PyTorch state dict that jwyang/faster-rcnn.pytorch ships, vgg16_caffe.pth (its README links
# Dropbox and a VT server). Zenodo keeps a copy, record 4515252, which publishes this md5 for its
# 553,433,685-byte file. That the Zenodo file is byte for byte jwyang's is not verified here; its
# size is that of jwyang's (527.8 MiB), and the model checks any file's tensors when it loads it.
VGG16_CAFFE_URL = "https://zenodo.org/records/4515252/files/vgg16_caffe.pth?download=1"
VGG16_CAFFE_MD5 = "433ad40ddbd662d6448e13a6cef812f2"
VGG16_CAFFE_ORIGIN = "https://www.dropbox.com/s/s3brpk0bdq60nyb/vgg16_caffe.pth?dl=0"


def download_vgg16_caffe(
    dest: Path, url: str | None = None, md5: str | None = None, show_progress: bool = True
) -> Path:
    """Fetch the Caffe VGG16 state dict to ``dest`` atomically, md5-checked; return ``dest``.

    A file already at ``dest`` (downloaded before, or put there by hand) is checked against the
    md5 and kept. Without ``url``: :data:`VGG16_CAFFE_URL` with :data:`VGG16_CAFFE_MD5`; with
    it, ``md5`` (None: not checked). Offline, one line says where to put the file.
    """
    if url is None:
        url, md5 = VGG16_CAFFE_URL, VGG16_CAFFE_MD5
    dest = Path(dest).expanduser()
    if dest.is_file():
        _check_md5(dest, md5)
        return dest
    hint = f"download {VGG16_CAFFE_ORIGIN} elsewhere and put it at {dest}"
    return fetch(url, dest, md5, show_progress, hint)
