"""Progress on a stderr that is not a terminal: a few plain lines, no redrawn bar (issue 12)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from ohemcli import progress as progress_module
from ohemcli.progress import PlainProgress, make_progress, train_columns, train_fields


@pytest.fixture()
def captured(monkeypatch) -> io.StringIO:
    """Point the stderr console at a string buffer, which is not a terminal."""
    buffer = io.StringIO()
    monkeypatch.setattr(progress_module, "err_console", Console(file=buffer, width=200))
    return buffer


def test_a_terminal_gets_the_live_bar(monkeypatch):
    terminal = Console(file=io.StringIO(), force_terminal=True, force_interactive=True)
    monkeypatch.setattr(progress_module, "err_console", terminal)
    assert type(make_progress()) is Progress


def test_a_file_gets_start_each_tenth_and_end(captured):
    with make_progress(*train_columns()) as bar:
        assert isinstance(bar, PlainProgress)
        task = bar.add_task("train ohem", total=400, **train_fields())
        for _ in range(400):
            bar.update(task, advance=1, **train_fields(1.5, 0.01, 0.25))
    text = captured.getvalue()
    lines = text.splitlines()
    assert len(lines) == 11  # start, then 10%, 20%, ..., 100%
    assert lines[0].startswith("train ohem: 0/400 0%") and lines[0].endswith("start")
    assert lines[1].startswith("train ohem: 40/400 10%")
    assert "loss 1.500 lr 0.01 0.250 s/it" in lines[5]
    assert lines[-1].startswith("train ohem: 400/400 100%") and lines[-1].endswith("done")
    assert "\r" not in text and "\x1b" not in text and "" not in lines  # no redraws, no blanks


def test_a_task_stopped_early_says_where(captured):
    with make_progress() as bar:
        task = bar.add_task("detect test", total=50)
        for _ in range(7):
            bar.advance(task)
    lines = captured.getvalue().splitlines()
    assert lines[0].endswith("start")
    assert lines[1].startswith("detect test: 5/50 10%")
    assert lines[-1].startswith("detect test: 7/50 14%") and lines[-1].endswith("stopped")
    assert len(lines) == 3


def test_a_task_of_unknown_size_gets_start_and_end(captured):
    with make_progress() as bar:
        task = bar.add_task("download", total=None)
        bar.advance(task, 300)
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("start")
    assert lines[1].startswith("download: 300/?") and lines[1].endswith("end")


def test_disabled_progress_writes_nothing(captured):
    with make_progress(disable=True) as bar:
        task = bar.add_task("x", total=10)
        bar.advance(task, 10)
    assert captured.getvalue() == ""
