"""The results of a comparison on stdout, in one of four formats (``--format``, ``--json``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ohemcli.report.analysis import Analysis

TABLE_WIDTH = 180  # rich table width when stdout is not a terminal (files, pipes, tests)


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


def print_results(a: Analysis, fmt: Format = Format.table, runs: bool = False) -> None:
    """The summary and pairs tables (or, with ``runs``, one row per run) and notes on stdout.

    Each run left out of the numbers (``report.validate``) gets one warning line on stderr, and
    runs that are not settled one per sampler, in every format.
    """
    from rich.console import Console

    from ohemcli.progress import err_console, out_console
    from ohemcli.report import analysis, tables

    text = "\n".join([*a.notes, *a.time_sentences(), a.method])
    if fmt == Format.json:
        print(analysis.to_json(a))
    elif fmt == Format.csv:
        print(tables.to_csv(a.results if runs else a.summary), end="")
    elif fmt == Format.md:
        shown = a.results.drop(columns=["run_dir"]) if runs else tables.formatted(a.summary)
        pairs = tables.markdown_table(tables.formatted_pairs(a.pairs)) if len(a.pairs) else ""
        print(tables.markdown_table(shown) + "\n" + pairs + "\n" + text)
    else:
        console = (
            out_console if out_console.is_terminal else Console(width=TABLE_WIDTH, markup=False)
        )
        console.print(tables.rich_table(tables.formatted(a.summary), title="Sampler comparison"))
        if len(a.pairs):
            console.print(tables.rich_table(tables.formatted_pairs(a.pairs), title="Pairs"))
        console.print(text, highlight=False, soft_wrap=True)
    for line in a.left_out:
        err_console.print(f"Warning: {line}", highlight=False, soft_wrap=True)
    for line in a.stability_warnings:
        err_console.print(f"Warning: {line}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send ``print`` to stderr while the work runs: stdout carries the results alone (one JSON
    document under ``--json``), whatever a plugin or library prints meanwhile."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
