"""Rich consoles and progress bars. Progress and logs go to stderr; results go to stdout."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Messages quote user input (paths, sampler, class and file names) that may read as rich markup:
# "[/x]" raises MarkupError and "[bold]x" loses its tag. So no console of ours parses markup, and
# styled parts are built by `styled`, the one place that mixes style with a message.
err_console = Console(stderr=True, markup=False)
out_console = Console(markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Literal text from ``parts``; a ``(text, style)`` pair is shown in that style.

    Nothing is parsed as markup, so a user's ``[/x]`` prints as written.
    """
    return Text.assemble(*parts)


def setup_logging(level: int = logging.INFO) -> None:
    """Send the ``ohemcli`` logger to stderr through rich (once)."""
    logger = logging.getLogger("ohemcli")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err_console, show_path=False, show_time=False))
    logger.setLevel(level)
    logger.propagate = False


PLAIN_STEP_PERCENT = 10  # a non-terminal stderr gets a line per this many percent


class PlainProgress(Progress):
    """Progress for a stderr that is not an interactive terminal (CI, ``| tee``, a log file).

    No live bar is drawn: each task writes one plain line when it starts, one each time it
    passes another tenth of its total, and one when it ends (or when the display stops before).
    """

    def __init__(
        self, *columns: Any, fields: tuple[ProgressColumn, ...] = (), **kwargs: Any
    ) -> None:
        super().__init__(*columns, **kwargs)
        self._printed_step: dict[TaskID, int] = {}
        self._fields = fields  # columns such as loss and lr, written at the end of each line

    def start(self) -> None:  # no live display: lines are printed as tasks move
        pass

    def stop(self) -> None:
        """Write the last line of every task that has not reached its total (or has none)."""
        if self.disable:
            return
        for task_id, task in list(self._tasks.items()):
            if not task.total:
                self._print_line(task_id, "end")  # a download of unknown size, say
            elif task.completed < task.total:
                self._print_line(task_id, "stopped")

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._printed_step[task_id] = self._step(task_id)
        if not self.disable:
            self._print_line(task_id, "start")
        return task_id

    def update(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:
        super().update(task_id, *args, **kwargs)
        self._maybe_print(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_print(task_id)

    def _step(self, task_id: TaskID) -> int:
        task = self._tasks[task_id]
        if not task.total:
            return 0
        return int(100 * min(task.completed, task.total) / task.total) // PLAIN_STEP_PERCENT

    def _maybe_print(self, task_id: TaskID) -> None:
        step = self._step(task_id)
        if self.disable or step <= self._printed_step.get(task_id, 0):
            return
        self._printed_step[task_id] = step
        task = self._tasks[task_id]
        self._print_line(task_id, "done" if task.finished else "")

    def _print_line(self, task_id: TaskID, state: str) -> None:
        task = self._tasks[task_id]
        total = "?" if task.total is None else f"{task.total:g}"
        parts = [f"{task.description}: {task.completed:g}/{total}"]
        if task.total:
            parts.append(f"{100 * task.completed / task.total:.0f}%")
        parts.append(_clock(task.elapsed))
        if not task.finished and task.time_remaining is not None:
            parts.append(f"ETA {_clock(task.time_remaining)}")
        parts += [str(column.render(task)) for column in self._fields]  # a Text's plain text
        if state:
            parts.append(state)
        self.console.print(" ".join(parts), markup=False, highlight=False, soft_wrap=True)


def _clock(seconds: float | None) -> str:
    return str(timedelta(seconds=int(seconds or 0)))


def make_progress(*extra_columns: ProgressColumn, disable: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, n/total, elapsed, ETA and any extra columns.

    On a stderr that is not an interactive terminal, a :class:`PlainProgress` that writes a few
    plain lines instead of redrawing a bar.
    """
    columns = (
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *extra_columns,
    )
    options: dict[str, Any] = {"console": err_console, "disable": disable, "transient": False}
    if err_console.is_interactive:
        return Progress(*columns, **options)
    return PlainProgress(*columns, fields=extra_columns, **options)


def train_columns() -> tuple[TextColumn, ...]:
    """Extra columns of a training bar: smoothed loss, lr and s/iter (see :func:`train_fields`)."""
    return (
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("lr {task.fields[lr]}"),
        TextColumn("{task.fields[speed]} s/it"),
    )


def train_fields(
    loss: float | None = None, lr: float | None = None, s_per_iter: float | None = None
) -> dict[str, Any]:
    """Values for :func:`train_columns`; ``-`` for a value not known yet."""
    return {
        "loss": "-" if loss is None else f"{loss:.3f}",
        "lr": "-" if lr is None else f"{lr:.2g}",
        "speed": "-" if s_per_iter is None else f"{s_per_iter:.3f}",
    }
