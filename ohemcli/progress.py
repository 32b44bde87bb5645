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


def train_columns() -> tuple[TextColumn, ...]:
    """Extra columns of a training bar: smoothed loss, lr and s/iter (see :func:`train_fields`)."""
    return (
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("lr {task.fields[lr]}"),
        TextColumn("{task.fields[speed]} s/it"),
    )


def train_fields(
    loss: float | None = None, lr: float | None = None, s_per_iter: float | None = None
) -> dict[str, str]:
    """Values for :func:`train_columns`; ``-`` for a value not known yet."""
    return {
        "loss": "-" if loss is None else f"{loss:.3f}",
        "lr": "-" if lr is None else f"{lr:.2g}",
        "speed": "-" if s_per_iter is None else f"{s_per_iter:.3f}",
    }
