"""Counting the runs that train on one host at once, through flock-ed marker files."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
from pathlib import Path

import torch

from ohemcli.runs.host_runs import HostRuns, device_names
from tests.helpers import torch_threads


def test_markers_count_live_runs_and_forget_dead_ones(tmp_path: Path) -> None:
    stale = tmp_path / "12345-1.run"  # a marker left by a killed process: nobody holds its lock
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"")
    with HostRuns(tmp_path) as a:
        assert a.count() == 1 and not stale.exists()
        with HostRuns(tmp_path) as b:
            assert a.count() == b.count() == 2
            assert a.sample() == 2
        assert a.count() == 1
        assert a.most == 2  # the most seen is kept
    assert list(tmp_path.glob("*.run")) == []


def _hold(folder: str, ready, release) -> None:  # type: ignore[no-untyped-def]
    with HostRuns(Path(folder)):
        ready.set()
        release.wait(30)


def test_another_process_counts_until_it_dies(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    proc.start()
    assert ready.wait(60)
    with HostRuns(tmp_path) as mine:
        assert mine.count() == 2
        proc.kill()  # no clean exit: the kernel drops its lock, the marker stays behind
        proc.join()
        assert mine.count() == 1


def test_a_locked_marker_is_held_not_stale(tmp_path: Path) -> None:
    marker = tmp_path / "99-1.run"
    with open(marker, "wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert HostRuns(tmp_path).count() == 1 and marker.exists()


def test_cpu_devices_name_the_threads() -> None:
    with torch_threads(1):
        assert device_names(torch.device("cpu"), 1) == ["cpu (1 threads)"]
