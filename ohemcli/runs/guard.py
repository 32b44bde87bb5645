"""Guards of a run folder: one writer at a time, a resume that matches the run, a clean fresh start.

The lock is a POSIX record lock (``fcntl.lockf``) on ``RunPaths.lock``. Such a lock belongs to the
process that took it: the OS drops it the moment that process dies, and a forked child (a
DataLoader worker) does not inherit it. A ``flock`` belongs to the open file description instead,
which forked workers share, so it outlived a killed run for as long as its workers lingered. The
price of POSIX locks is that closing *any* descriptor of the file drops the process's lock, so
this module keeps the descriptors of the locks it holds (``_HELD``) and never opens a held lock
file a second time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ohemcli.config import (
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    with_recorded_choices,
)
from ohemcli.data.fingerprint import require_same_data
from ohemcli.errors import UserError, quote
from ohemcli.fileio import is_writable_dir
from ohemcli.runs.checkpointer import read_checkpoint, saved_config
from ohemcli.runs.paths import ComparePaths, RunPaths
from ohemcli.runs.settings import first_difference

# Checked first, so that the refusal names what matters most.
KEY_ORDER = ("sampler.name", "model.backbone", "data.classes")


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Refuse a folder that cannot be written, before any work starts (writes nothing)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UserError(f"{option} {quote(str(path))}: not a folder")
        if not is_writable_dir(path):
            raise UserError(f"{option} {quote(str(path))}: folder is not writable")
        return
    parent = next(p for p in path.absolute().parents if p.exists() or p.is_symlink())
    if not parent.is_dir():
        raise UserError(f"{option} {quote(str(path))}: {quote(str(parent))} is not a folder")
    if not is_writable_dir(parent):
        raise UserError(f"{option} {quote(str(path))}: {quote(str(parent))} is not writable")


_HELD: dict[str, int] = {}  # lock files this process holds (real path) -> descriptor


def _key(lock: Path) -> str:
    return os.path.realpath(lock)


def holder_of(lock: Path) -> str | None:
    """The pid written in ``lock`` when a process holds it, else None (creates nothing)."""
    if _key(lock) in _HELD:
        return str(os.getpid())
    if not lock.is_file():
        return None
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held by another process
            return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_holder(paths: RunPaths) -> str | None:
    """The pid that holds the run folder's lock, or None when it is free (creates nothing)."""
    return holder_of(paths.lock)


def pid_state(pid: str) -> str:
    """``pid N, running`` or ``pid N, no longer running``: whether the named process lives."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return f"pid {pid}, no longer running"
    except (ValueError, OverflowError):
        return f"pid {pid}"
    except PermissionError:
        pass  # another user's process: alive
    return f"pid {pid}, running"


def _busy(paths: RunPaths, pid: str) -> UserError:
    return UserError(
        f"{paths.root}: another ohem process ({pid_state(pid)}) is writing this run folder; "
        "wait for it or choose another --out"
    )


@contextlib.contextmanager
def folder_lock(lock: Path, busy: Callable[[str], UserError]) -> Iterator[None]:
    """Hold an exclusive POSIX lock on the file ``lock`` (its pid written in it) while the block
    runs; when another process holds it, raise ``busy(its pid)`` at once."""
    key = _key(lock)
    if key in _HELD:
        raise busy(str(os.getpid()))
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            raise busy(os.pread(fd, 32, 0).decode("ascii", "replace").strip()) from None
        _HELD[key] = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        _HELD.pop(key, None)
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting writer)


@contextlib.contextmanager
def run_lock(paths: RunPaths) -> Iterator[None]:
    """Hold the run folder's lock while the block runs; a second writer gets one line."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with folder_lock(paths.lock, lambda pid: _busy(paths, pid)):
        yield


@contextlib.contextmanager
def compare_lock(folder: ComparePaths) -> Iterator[None]:
    """Hold the compare folder's lock while one ``ohem compare`` decides what to train and
    submits it. A second compare on the folder is refused at once (one line), rather than made to
    wait: an in-process compare holds the folder for hours, and once the first has submitted, the
    same command finds its jobs alive and only watches them."""
    folder.root.mkdir(parents=True, exist_ok=True)

    def busy(pid: str) -> UserError:
        return UserError(
            f"{folder.root}: another ohem compare ({pid_state(pid)}) is submitting runs to this "
            "folder; wait until it has submitted them, then run the same command to watch them"
        )

    with folder_lock(folder.lock, busy):
        yield


def clear_leftovers(paths: RunPaths) -> None:
    """Remove the files of an earlier run that died before its first checkpoint."""
    for path in (paths.config, paths.metrics, paths.evals, paths.summary, paths.plugin):
        path.unlink(missing_ok=True)
    for folder in (paths.eval_dir, paths.tensorboard):
        if folder.is_dir():
            shutil.rmtree(folder)


def _same_run(where: Path, saved: ExperimentConfig, cfg: ExperimentConfig) -> None:
    """Refuse a resume whose saved config differs from the run's (the budget may grow)."""
    run = with_recorded_choices(cfg)
    # The budget may grow; how long torchrun ranks wait for each other and whether event files
    # are written change no result.
    train = replace(
        run.train,
        iters=saved.train.iters,
        dist_timeout_s=saved.train.dist_timeout_s,
        tensorboard=saved.train.tensorboard,
    )
    run = replace(run, train=train)
    if cfg.data.classes is None:  # the saved config holds the class list the data gave
        run = replace(run, data=replace(run.data, classes=saved.data.classes))
    diff = first_difference(config_to_dict(saved), config_to_dict(run), KEY_ORDER)
    if diff is not None:
        key, was, now = diff
        raise UserError(
            f"{where}: the run was saved with {key} = {quote(was)}, this run has {quote(now)}; "
            "choose another --out"
        )


def check_resume(paths: RunPaths, cfg: ExperimentConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None to start fresh; refuses to clobber or mix runs.

    Checks, before anything is written: no other process holds the folder; a checkpoint is only
    continued with ``resume``; config.yaml and the checkpoint's own config match the run's config
    (sampler, backbone, class list first); the checkpoint is one of ours
    (:func:`~ohemcli.runs.checkpointer.read_checkpoint`).
    """
    holder = lock_holder(paths)
    if holder is not None:
        raise _busy(paths, holder)
    if not paths.checkpoint.exists():
        return None
    if not resume:
        raise UserError(
            f"{paths.root}: already holds a run; "
            "pass --resume to continue it or choose another --out"
        )
    _same_run(paths.config, load_config(paths.config), cfg)
    ckpt = read_checkpoint(paths.checkpoint)
    saved = config_from_dict(saved_config(ckpt), str(paths.checkpoint))
    _same_run(paths.checkpoint, saved, cfg)
    return ckpt


def check_finished(paths: RunPaths, cfg: ExperimentConfig, fingerprint: Any = None) -> None:
    """Refuse to reuse a finished run that is not the run ``cfg`` asks for, naming its folder.

    A run is identified by what it is, not by its folder's name: its sampler's full name (two
    plugins can map to one folder name), its seed, its config (less the budget, which may grow)
    and, when both sides have one, the fingerprint of its data (``data.fingerprint``).
    """
    summary = paths.read_summary()
    for key, want in (("sampler", cfg.sampler.name), ("seed", cfg.train.seed)):
        if summary.get(key) != want:
            raise UserError(
                f"{paths.root}: holds a finished run of {key} {quote(summary.get(key))}, not "
                f"{quote(want)}; move it away or choose another --out"
            )
    if not paths.config.is_file():
        raise UserError(
            f"{paths.config}: missing, so the finished run cannot be checked; "
            "move the run folder away or choose another --out"
        )
    _same_run(paths.config, load_config(paths.config), cfg)
    if fingerprint is not None:
        require_same_data(
            summary.get("data_fingerprint"), fingerprint, paths.root, "this run trained",
            "move it away or choose another --out",
        )  # fmt: skip
