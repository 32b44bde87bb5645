"""TensorBoard event files of a run, written beside ``metrics.jsonl`` (rank 0 only).

Every record that the trainer appends to ``metrics.jsonl`` or ``evals.jsonl`` also becomes
scalars in ``RUN/tb/``, one event folder per run, so that ``tensorboard --logdir runs/mycompare``
overlays the samplers and seeds of a compare (each run is one "run" of TensorBoard, named by its
folder ``runs/<sampler>-s<seed>/tb``). Tags are grouped by what they measure (``TAGS``): the same
tag in every run, so each chart holds every run's line.

A resumed run appends a new event file whose ``purge_step`` tells TensorBoard to drop the steps
that the crashed process logged after the checkpoint (the JSONL logs lose them too, see
``fileio.truncate_jsonl``). Events are queued in memory and written by TensorBoard's own thread;
the trainer flushes them at every checkpoint, so a crash loses at most what its logs lose, and a
torn last record is skipped by TensorBoard's reader.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

# metrics.jsonl key -> tag. Keys not listed here that hold a number go under ``other/<key>``
# (a plugin sampler's own figures show up without a change here).
TAGS: dict[str, str] = {
    "loss": "loss/total",
    "loss_cls": "loss/cls",
    "loss_box": "loss/box",
    "lr": "train/lr",
    "fg_fraction": "train/fg_fraction",
    "step_time": "time/step_s",
    "data_time": "time/data_s",
    "p_true_fg": "health/p_true_fg",
    "p_top_bg": "health/p_top_bg",
    "hnm_pool_size": "sampler/hnm_pool_size",
    "readonly_time": "sampler/readonly_s",
    "mean_loss_chosen": "sampler/mean_loss_chosen",
    "mean_loss_all": "sampler/mean_loss_all",
    "loss_rpn_cls": "loss/rpn_cls",
    "loss_rpn_box": "loss/rpn_box",
    "candidates_per_image": "rpn/candidates_per_image",
}
S_PER_ITER = "time/s_per_iter"  # step + data seconds: what the summary's s_per_iter averages
# evals.jsonl: mAP against iterations, and against train + mining seconds (TensorBoard's steps
# are integers: whole seconds), the report's "mAP against wall-clock".
MAP_TAG = "mAP/test"
MAP_SECONDS_TAG = "mAP/test_vs_seconds"
RECALL_TAG = "proposals/recall_{}"  # each evaluation's proposal recall, "300@0.5" and the rest
NOT_SCALARS = {"iter", "iou_hist", "kind"}
# Events wait in memory between checkpoints: TensorBoard writes them from its own thread, and
# the trainer flushes at each checkpoint (not on every line, which would cost a disk write).
MAX_QUEUE = 1000
FLUSH_SECS = 300


def available() -> bool:
    """True when the ``tensorboard`` package is installed (torch's writer needs it)."""
    return importlib.util.find_spec("tensorboard") is not None


def metric_scalars(record: dict[str, Any]) -> dict[str, float]:
    """Tag -> value of one ``metrics.jsonl`` record (finite numbers only)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[TAGS.get(key, f"other/{key}")] = float(value)
    if TAGS["step_time"] in out:
        out[S_PER_ITER] = out[TAGS["step_time"]] + out.get(TAGS["data_time"], 0.0)
    return out


class EventWriter:
    """A run's TensorBoard writer: :meth:`write` takes the trainer's JSONL records."""

    def __init__(self, log_dir: Path, resume_from: int = 0) -> None:
        """Open ``log_dir`` (created); ``resume_from``: the checkpoint's iteration of a resumed
        run, whose later steps in older event files TensorBoard then ignores."""
        from torch.utils.tensorboard import SummaryWriter  # torch and tensorboard load lazily

        log_dir.mkdir(parents=True, exist_ok=True)
        purge = resume_from + 1 if resume_from > 0 else None
        self._writer = SummaryWriter(
            str(log_dir), purge_step=purge, max_queue=MAX_QUEUE, flush_secs=FLUSH_SECS
        )

    def write(self, record: dict[str, Any], kind: str) -> None:
        """Add one record of ``metrics.jsonl`` (``kind`` "metrics") or ``evals.jsonl`` ("eval")."""
        step = int(record["iter"])
        if kind == "eval":
            value = float(record["mAP"])
            self._writer.add_scalar(MAP_TAG, value, step)
            seconds = record.get("wall_seconds")
            if seconds is not None:
                self._writer.add_scalar(MAP_SECONDS_TAG, value, round(float(seconds)))
            for key, share in (record.get("proposal_recall") or {}).items():
                if "@" in key:  # not the mean count of proposals
                    self._writer.add_scalar(RECALL_TAG.format(key), float(share), step)
            return
        for tag, value in metric_scalars(record).items():
            self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        """Write the queued events to disk (at every checkpoint)."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


_told_missing = False  # the "not installed" note: once per process (a compare trains many)


def open_events(enabled: bool, log_dir: Path, resume_from: int) -> EventWriter | None:
    """The run's writer, or None when ``train.tensorboard`` is off or the package is missing
    (then one note on stderr: training goes on without event files)."""
    global _told_missing
    if not enabled:
        return None
    if not available():
        if not _told_missing:
            from ohemcli.progress import err_console

            err_console.print(
                "Note: tensorboard is not installed, so runs write no event files "
                "(pip install tensorboard; --no-tensorboard silences this)."
            )
            _told_missing = True
        return None
    return EventWriter(log_dir, resume_from)
