"""Guards of a run folder: one writer at a time, a resume that matches the run, a clean fresh start.

The lock is ``fcntl.flock`` on ``RunPaths.lock``: the OS releases it when the process dies, so a
killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ohemcli.config import ExperimentConfig, config_from_dict, config_to_dict, load_config
from ohemcli.errors import UserError, quote
from ohemcli.fileio import is_writable_dir
from ohemcli.runs.checkpointer import read_checkpoint, saved_config
from ohemcli.runs.paths import RunPaths
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


def lock_holder(paths: RunPaths) -> str | None:
    """The pid that holds the run folder's lock, or None when it is free (creates nothing)."""
    if not paths.lock.is_file():
        return None
    with open(paths.lock, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read(32).decode("ascii", "replace").strip() or "unknown"
    return None


def _busy(paths: RunPaths, pid: str) -> UserError:
    return UserError(
        f"{paths.root}: another ohem process (pid {pid}) is writing this run folder; "
        "wait for it or choose another --out"
    )


@contextlib.contextmanager
def run_lock(paths: RunPaths) -> Iterator[None]:
    """Hold the run folder's lock while the block runs; a second writer gets one line."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(paths, os.read(fd, 32).decode("ascii", "replace").strip()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting writer)


def clear_leftovers(paths: RunPaths) -> None:
    """Remove the files of an earlier run that died before its first checkpoint."""
    for path in (paths.config, paths.metrics, paths.evals, paths.summary, paths.plugin):
        path.unlink(missing_ok=True)
    if paths.eval_dir.is_dir():
        shutil.rmtree(paths.eval_dir)


def _same_run(where: Path, saved: ExperimentConfig, cfg: ExperimentConfig) -> None:
    """Refuse a resume whose saved config differs from the run's (the budget may grow)."""
    run = replace(cfg, train=replace(cfg.train, iters=saved.train.iters))
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
