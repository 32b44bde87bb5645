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

import yaml

from ohemcli.errors import UserError, quote

# Most nodes a YAML file may expand to, aliases followed. A config has about 70; a few hundred
# bytes of nested aliases (an "alias bomb") would otherwise expand to billions.
MAX_YAML_NODES = 100_000


def is_writable_dir(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, found by trying: root passes ``os.access``
    everywhere, also on a read-only file system such as /sys. The probe file is removed at once."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def cache_dir() -> Path:
    """The cache folder: ``$OHEM_CACHE``, default ``~/.cache/ohemcli``.

    A file there, a folder that cannot be written, or a missing folder that cannot be made (its
    nearest existing parent is a file or not writable) is one line naming ``OHEM_CACHE``.
    """
    path = Path(os.environ.get("OHEM_CACHE", Path.home() / ".cache" / "ohemcli")).expanduser()
    name = f"OHEM_CACHE={quote(str(path))}"
    if "OHEM_CACHE" not in os.environ:
        name = f"{path} (the default of OHEM_CACHE)"
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise UserError(f"{name}: the cache folder is not a folder")
    if path.is_dir() and not is_writable_dir(path):
        raise UserError(f"{name}: the cache folder is not writable")
    if not path.exists():  # made on first use: its nearest existing folder must take it
        above = next(p for p in path.absolute().parents if p.exists() or p.is_symlink())
        if not above.is_dir():
            raise UserError(f"{name}: cannot make the cache folder, {quote(str(above))} is a file")
        if not is_writable_dir(above):
            raise UserError(
                f"{name}: cannot make the cache folder, {quote(str(above))} is not writable"
            )
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


# Most digits of an integer in a file we read: more would overflow a float wherever it is used
# as one (a float holds about 308), and Python's own limit (4300) is a ValueError, not a message.
MAX_INT_DIGITS = 300


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def parse_json(text: str, where: str | Path) -> Any:
    """``json.loads(text)``; anything it raises is one line naming ``where``.

    Valid JSON can still be hostile: an integer of thousands of digits (ValueError), nesting
    deeper than the interpreter's stack (RecursionError). Each is refused, never a traceback.
    """
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise UserError(f"{where}: refused, JSON nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's, in one line
        raise UserError(
            f"{where}: refused JSON ({type(exc).__name__}: {quote(str(exc))})"
        ) from None


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a missing, unreadable, corrupt or hostile file is one line naming
    it (see :func:`parse_json`)."""
    return parse_json(read_text(path), path)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes in ``node`` with every alias expanded; each distinct node is counted once
    (``sizes``), so this costs the file's size, not its expansion's."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = size
    return size


def load_yaml(text: str, where: str | Path) -> Any:
    """``yaml.safe_load(text)``, refusing a document that expands beyond ``MAX_YAML_NODES``.

    Invalid YAML, an alias bomb or absurd nesting is one line naming ``where``.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise UserError(
                f"{where}: refused, its aliases expand to more than {MAX_YAML_NODES} YAML nodes"
            )
        return loader.construct_document(node)
    except UserError:
        raise
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: invalid YAML ({quote(str(exc).splitlines()[0])})") from None
    except RecursionError:
        raise UserError(f"{where}: refused, YAML nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - a bad date or number (ValueError...), in one line
        raise UserError(
            f"{where}: invalid YAML ({type(exc).__name__}: {quote(str(exc))})"
        ) from None
    finally:
        loader.dispose()


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


def _discard(_: object) -> None:
    """Drop a writer's return value (a byte count) where a callback returns nothing."""


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda p: _discard(p.write_text(text, encoding="utf-8")))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: _discard(p.write_bytes(data)))


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
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line, parse_int=_parse_int)
        except (json.JSONDecodeError, RecursionError, ValueError):
            continue  # a line torn by the crash
        if not isinstance(entry, dict):
            raise UserError(f"{path}:{k}: expected a JSON object, found {type(entry).__name__}")
        step = entry.get("iter", 0)
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            raise UserError(f"{path}:{k}: iter = {quote(step)} is not a number")
        if step <= last_iter:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
