"""What a run's ``summary.json`` fields must hold: one check, applied by
``RunPaths.read_summary`` for the readers that reuse a finished run (``finished_summary``: train
--resume, compare) and those that report it (``read_run``), so that both refuse the same edited
or foreign file, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ohemcli.errors import UserError, quote


def is_number(value: Any) -> bool:
    """An int or float that is not a bool (JSON's true is no number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Summary fields and what they must hold; a field may be absent (older runs), never mistyped.
_SUMMARY_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "sampler": ("a name", lambda v: isinstance(v, str) and bool(v)),
    "seed": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "iters": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "mAP": ("a number or null", lambda v: v is None or is_number(v)),
    "AP": (
        "a mapping of class to number or null",
        lambda v: isinstance(v, dict) and all(x is None or is_number(x) for x in v.values()),
    ),
    "data_fingerprint": (
        "a mapping of split role to digests",
        lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
    ),
}
_NUMBER_FIELDS = (
    "train_seconds", "mining_seconds", "eval_seconds", "total_seconds", "readonly_seconds",
    "s_per_iter", "mining_passes", "fg_fraction", "peak_memory_mb", "concurrent_runs",
)  # fmt: skip


def check_summary(path: Path, summary: dict[str, Any]) -> None:
    """Refuse a summary whose fields have the wrong type (an edited or foreign file), naming the
    field: the readers would otherwise fail far from the cause, or average a string."""
    for key, (what, ok) in _SUMMARY_TYPES.items():
        if key in summary and not ok(summary[key]):
            raise UserError(f"{path}: {key} = {quote(summary[key])} is not {what}")
    for key in _NUMBER_FIELDS:
        value = summary.get(key)
        if value is not None and not is_number(value):
            raise UserError(f"{path}: {key} = {quote(value)} is not a number")
