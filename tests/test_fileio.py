"""Atomic writes and the JSONL logs a resumed run rewinds."""

import json
import os
import stat

import pytest

from ohemcli.fileio import (
    append_jsonl,
    atomic_write,
    atomic_write_text,
    current_umask,
    truncate_jsonl,
)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_truncate_jsonl_drops_lines_past_the_checkpoint_and_torn_lines(tmp_path):
    log = tmp_path / "metrics.jsonl"
    for it in (10, 20, 30):
        append_jsonl(log, {"iter": it, "loss": 1.0})
    with open(log, "a") as f:
        f.write('{"iter": 40, "lo')  # torn by a crash
    truncate_jsonl(log, 20)
    assert [json.loads(line)["iter"] for line in log.read_text().splitlines()] == [10, 20]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask_as_open_does(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:  # the reference: what open() gives
            f.write("x")
        written = atomic_write_text(tmp_path / "atomic", "x")
        atomic_write_text(tmp_path / "plain", "y")  # rewriting an existing file too
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == expected
    assert stat.S_IMODE(written.stat().st_mode) == expected
    assert current_umask() == old
