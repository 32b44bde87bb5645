"""Finished runs -> every number the report shows: per-sampler summary, pairs, time to accuracy,
and which runs are noise (``report.settled``).

``analyse`` is the one entry point: the terminal table, report.md, the CSVs and the JSON all
render the same ``Analysis``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ohemcli.errors import UserError
from ohemcli.report import tables
from ohemcli.report.pairs import pair_rows, sampler_rank
from ohemcli.report.settled import Flag, run_key, stability_of, warning_lines
from ohemcli.report.time_to_map import time_to_map_sentences, time_to_map_table
from ohemcli.report.validate import checked_runs
from ohemcli.runs.records import Run, read_run
from ohemcli.runs.stability import RunStability

BOOTSTRAP_METHOD = (
    "The 95% interval of each Δ is a paired bootstrap: each of the {n} resamples draws the test "
    "images and the seeds with replacement and rescores both samplers' mAP on the same draw from "
    "their saved per-detection matches, and the interval is the 2.5th to 97.5th percentile of the "
    "resampled mean Δ. A Δ is called better or worse only when its interval excludes 0."
)
T_METHOD = (
    "The 95% interval of each Δ is a paired t-interval over seeds (mean ± t(0.975, n−1)·s/√n); "
    "it does not cover the finite test set. A Δ is called better or worse only when its interval "
    "excludes 0."
)


@dataclass
class Analysis:
    """What a report shows (see the module docstring)."""

    runs: list[Run]
    results: pd.DataFrame  # one row per run (tables.runs_table)
    summary: pd.DataFrame  # one row per sampler (tables.summary_table)
    pairs: pd.DataFrame  # one row per sampler pair (pairs.PAIR_COLUMNS)
    time_to_map: pd.DataFrame  # one row per sampler (time_to_map.TTM_COLUMNS)
    bootstrap: int
    notes: list[str] = field(default_factory=list)  # warnings about what the numbers compare
    # One line per sampler with a run that is noise (unsettled or collapsed): its worst run,
    # the figures and what to try (report.settled.warning_lines).
    stability_warnings: list[str] = field(default_factory=list)
    stability: dict[str, RunStability] = field(default_factory=dict)  # by settled.run_key
    # One line per run folder left out because a file of it failed its checks (report.validate).
    left_out: list[str] = field(default_factory=list)
    # One line per run of the compare that did not finish (failed, killed, its folder gone):
    # report.md names them, not only the console.
    failed: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        """How the intervals were computed, in two sentences."""
        boot = self.pairs["method"].str.startswith("bootstrap")
        if len(self.pairs) and boot.all():
            return BOOTSTRAP_METHOD.format(n=self.bootstrap)
        if len(self.pairs) and boot.any():
            return (
                BOOTSTRAP_METHOD.format(n=self.bootstrap)
                + " Pairs marked 't over seeds' "
                + ("lack saved matches: " + T_METHOD)
            )
        return T_METHOD

    @property
    def target(self) -> float:
        return float(self.time_to_map["target"].iloc[0]) if len(self.time_to_map) else math.nan

    def time_sentences(self) -> list[str]:
        """ "ohem reaches 0.700 mAP: 310 s; hnm in 690 s: 2.2x." per sampler."""
        return time_to_map_sentences(self.time_to_map)


def analyse(
    runs: Sequence[Run],
    bootstrap: int = 1000,
    target_map: float | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
    left_out: Sequence[str] = (),
) -> Analysis:
    """Every table of a comparison of ``runs`` (``bootstrap`` resamples; 0: t-interval only;
    ``baseline``/``all_pairs``: which pairs, see ``pairs.sampler_pairs``).

    Only runs whose files pass ``report.validate`` count; each other run gets one line in
    ``left_out`` (after the given ``left_out`` lines, those of folders that did not even read).
    """
    runs, dropped = checked_runs(runs)
    left = [*left_out, *dropped]
    if not runs:
        if len(left) == 1:
            raise UserError(f"{left[0]}; no other run to report")
        raise UserError(f"no run to report: all {len(left)} were left out ({left[0]}; ...)")
    stability = stability_of(runs)
    results = tables.runs_table(runs, stability)
    ttm = time_to_map_table(runs, target_map)
    summary = tables.summary_table(results, ttm)
    pairs, pair_flags = pair_rows(runs, bootstrap, stability, baseline, all_pairs)
    # Every run that is not settled, then those that wobble more than a called pair's Δ.
    flags = [Flag(r, stability[run_key(r)]) for r in runs]
    flags = [f for f in flags if not f.stability.settled] + [f for f in pair_flags if f.pair]
    samplers = sorted({r.sampler for r in runs}, key=sampler_rank)
    warnings = warning_lines(runs, flags, samplers)
    return Analysis(
        runs, results, summary, pairs, ttm, bootstrap, notes(runs, results), warnings, stability,
        left,
    )  # fmt: skip


def analyse_results(
    results: pd.DataFrame,
    bootstrap: int = 1000,
    target_map: float | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
) -> Analysis:
    """:func:`analyse` of the runs of a ``tables.load_runs`` table (read again from run_dir)."""
    runs = [read_run(d) for d in results["run_dir"]]
    return analyse(runs, bootstrap, target_map, baseline, all_pairs)


def analyse_folders(
    paths: Sequence[str | Path],
    bootstrap: int = 1000,
    target_map: float | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
) -> Analysis:
    """:func:`analyse` of every finished run under ``paths`` (run and/or compare folders); a
    run folder whose files do not read is left out with one line, like one that fails checks."""
    left: list[str] = []
    runs = tables.read_runs(paths, left)
    return analyse(runs, bootstrap, target_map, baseline, all_pairs, left)


def _protocol_text(p: dict[str, Any] | None) -> str:
    if not p:
        return "not recorded in the run folder"
    keys = ("name", "max_dets", "score_thresh", "per_class_per_image", "nms")
    return ", ".join(f"{k}={p[k]}" for k in keys if k in p)


def protocol_lines(runs: Sequence[Run]) -> list[str]:
    """Which eval protocol each final mAP used: one line when all runs agree, else one per run."""
    texts = {r.name: _protocol_text(r.eval_protocol) for r in runs}
    if len(set(texts.values())) == 1:
        return [f"Eval protocol (every run): {next(iter(texts.values()))}."]
    return ["Warning: the runs' final mAPs used different eval protocols:"] + [
        f"- {name}: {text}" for name, text in texts.items()
    ]


def notes(runs: Sequence[Run], results: pd.DataFrame) -> list[str]:
    """One-line warnings: unlike settings, unlike eval protocols, unlike sharing of the machine."""
    out = []
    if results["setting"].nunique() > 1:
        out.append(
            "Warning: these runs were trained with different settings; the Δs compare unlike runs."
        )
    if len({_protocol_text(r.eval_protocol) for r in runs}) > 1:
        out.append("Warning: the final mAPs used different eval protocols (see Eval protocol).")
    sharing = {
        (r.summary.get("concurrent_runs"), tuple(r.summary.get("devices") or ()))
        for r in runs
        if "concurrent_runs" in r.summary or "devices" in r.summary
    }
    if len(sharing) > 1:
        counts = sorted({c for c, _ in sharing if c is not None})
        devices = sorted({d for _, ds in sharing for d in ds})
        out.append(
            "Warning: the timing columns compare runs that shared the machine differently "
            f"(concurrent runs {', '.join(map(str, counts)) or '?'}; devices "
            f"{', '.join(devices) or '?'}), so their seconds are not like for like."
        )
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NaN as None (JSON null)."""
    return json.loads(df.to_json(orient="records"))


def to_json(a: Analysis) -> str:
    """One JSON object: runs, samplers, pairs, time_to_map, target_map, method, notes,
    stability_warnings, left_out, failed (each run's stability is in its ``runs`` record)."""
    return json.dumps(
        {
            "runs": _records(a.results),
            "samplers": _records(a.summary),
            "pairs": _records(a.pairs),
            "time_to_map": _records(a.time_to_map),
            "target_map": a.target,
            "bootstrap": a.bootstrap,
            "method": a.method,
            "eval_protocol": protocol_lines(a.runs),
            "notes": a.notes,
            "stability_warnings": a.stability_warnings,
            "left_out": a.left_out,
            "failed": a.failed,
        },
        indent=2,
    )
