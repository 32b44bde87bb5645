"""Rich consoles and progress bars. Progress and logs go to stderr; results go to stdout."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err_console = Console(stderr=True)
out_console = Console()


def setup_logging(level: int = logging.INFO) -> None:
    """Send the ``ohemcli`` logger to stderr through rich (once)."""
    logger = logging.getLogger("ohemcli")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err_console, show_path=False, show_time=False))
    logger.setLevel(level)
    logger.propagate = False


def make_progress(*extra_columns: TextColumn, disable: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, n/total, elapsed, ETA and any extra columns."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *extra_columns,
        console=err_console,
        disable=disable,
        transient=False,
    )
