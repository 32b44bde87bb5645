"""Atomic file writes, the one reader of text and JSON files, and the cache folder.

Every write that a crash could interrupt goes through here: write to a temporary file in the same
folder, then rename over the target (rename is atomic on POSIX), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ohemcli.errors import UserError, quote


def is_writable_dir(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, found by trying: root passes ``os.access``
    everywhere, also on a read-only file system such as /sys. The probe file is removed at once."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def cache_dir() -> Path:
    """The cache folder: ``$OHEM_CACHE``, default ``~/.cache/ohemcli``; a file there is an error."""
    path = Path(os.environ.get("OHEM_CACHE", Path.home() / ".cache" / "ohemcli")).expanduser()
    name = f"OHEM_CACHE={quote(str(path))}" if "OHEM_CACHE" in os.environ else str(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise UserError(f"{name}: the cache folder is not a folder")
    if path.is_dir() and not is_writable_dir(path):
        raise UserError(f"{name}: the cache folder is not writable")
    return path


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file, a leading byte-order mark dropped (Windows editors write one).

    A missing, unreadable or non-UTF-8 file is one line naming it (``what`` says what was missing).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found" if not path.exists() else f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a missing, unreadable or corrupt file is one line naming it."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux 4.7+)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # the portable way: set and put back at once
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the temporary file onto ``path``.

    The file gets the mode ``open()`` would give a new file (0666 less the umask): mkstemp
    creates it 0600, which would hide a shared run folder's results from the group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | Path, obj: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a crash loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_jsonl(path: str | Path, last_iter: int) -> None:
    """Drop the lines of a JSONL log past ``last_iter`` (and a torn last line), atomically.

    A run that crashed after its last checkpoint logged iterations that the resumed run will log
    again; without this they would appear twice.
    """
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("iter", 0) <= last_iter:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by the crash
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
