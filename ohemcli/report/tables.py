"""Run folders -> pandas tables -> rich / markdown / CSV.

``load_runs`` / ``runs_table`` give one row per run (``RUN_COLUMNS`` plus ``AP/<class>``; the
run's stability in ``settled.STABILITY_COLUMNS``);
``summary_table`` one row per sampler (``SUMMARY_COLUMNS``: means over seeds, time to the target
mAP); ``report.pairs`` the Δ of every pair with its interval and verdict. ``evals_frame`` and
``metrics_frame`` stack the runs' logs for the plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from ohemcli.errors import UserError
from ohemcli.report.pairs import sampler_rank
from ohemcli.report.settled import STABILITY_COLUMNS, run_key, run_stability, stability_columns
from ohemcli.report.validate import left_out_line
from ohemcli.runs.paths import run_dirs
from ohemcli.runs.records import Run, read_run
from ohemcli.runs.stability import RunStability

BASELINE = "fixed"
RUN_COLUMNS = [
    "run", "sampler", "seed", "data", "iters", "metric", "mAP", "train_seconds", "mining_seconds",
    "eval_seconds", "total_seconds", "readonly_seconds", "s_per_iter", "mining_passes",
    "fg_fraction", "peak_memory_mb", "concurrent_runs", "device", "machine", "backbone",
    "setting", "regime", "detector", "proposals", "recall_300", "recall_1000",
    *STABILITY_COLUMNS, "run_dir",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "sampler", "regime", "mAP", "mAP_std", "recall_300", "train_s", "mining_s", "total_s",
    "s_per_iter", "s_per_iter_ratio", "peak_memory_mb", "fg_pct", "time_to_target", "runs",
]  # fmt: skip
# The proposals' recall beside mAP: a sampler cannot choose what the proposals miss (IoU 0.5,
# the first 300 proposals per image; evaluation.proposal_recall).
RECALL_KEYS = {"recall_300": "300@0.5", "recall_1000": "1000@0.5"}
LABELS = {
    "sampler": "sampler", "regime": "regime", "mAP": "mAP", "mAP_std": "mAP std",
    "recall_300": "recall@300",
    "coco_AP": "COCO AP",
    "train_s": "train s",
    "mining_s": "mining s", "total_s": "total s", "s_per_iter": "s/iter",
    "s_per_iter_ratio": "s/iter ×fixed", "peak_memory_mb": "peak MB", "fg_pct": "fg %",
    "time_to_target": "s to target", "runs": "runs",
}  # fmt: skip
_FORMATS = {
    "mAP": "{:.4f}", "mAP_std": "{:.4f}", "coco_AP": "{:.4f}", "recall_300": "{:.3f}",
    "train_s": "{:.1f}",
    "mining_s": "{:.1f}", "total_s": "{:.1f}", "s_per_iter": "{:.3f}", "s_per_iter_ratio": "{:.2f}",
    "peak_memory_mb": "{:.0f}", "fg_pct": "{:.1f}", "time_to_target": "{:.0f}",
}  # fmt: skip


def read_runs(paths: Sequence[str | Path], left_out: list[str] | None = None) -> list[Run]:
    """Every finished run under ``paths`` (run folders and/or compare folders), one per
    (sampler, seed). A run folder whose files do not read is an error, or with ``left_out``
    one line appended there (``report.validate.left_out_line``) and the others go on."""
    runs: list[Run] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"{path}: folder does not exist")
        found = run_dirs(path)
        if not found:
            raise UserError(
                f"{path}: neither a run folder (with a summary) nor a compare folder (with "
                "finished runs under runs/)"
            )
        for d in found:
            try:
                runs.append(read_run(d))
            except UserError as exc:
                if left_out is None:
                    raise
                left_out.append(left_out_line(d, str(exc)))
    seen: dict[tuple[str, int], list[str]] = {}
    for run in runs:
        seen.setdefault((run.sampler, run.seed), []).append(str(run.paths.root))
    dup = sorted(d for dirs in seen.values() if len(dirs) > 1 for d in dirs)
    if dup:
        raise UserError(
            f"the same sampler and seed appear twice ({', '.join(dup)}); pass one of each"
        )
    return runs


def run_row(run: Run, stability: RunStability | None = None) -> dict[str, Any]:
    """One row: the run's summary, a few config fields, its stability (assessed here when not
    given) and per-class AP as ``AP/<class>``."""
    row = {k: run.summary.get(k) for k in RUN_COLUMNS}
    row.update(
        run=run.name,
        run_dir=str(run.paths.root),
        backbone=run.config.get("model", {}).get("backbone"),
        setting=run.setting,
        regime=regime_label(run.summary.get("regime")),
        # a run of before faster-rcnn recorded neither: it was fast-rcnn on its data.proposals
        detector=run.summary.get("detector") or "fast-rcnn",
        proposals=run.summary.get("proposal_source") or run.config.get("data", {}).get("proposals"),
    )
    recall = run.summary.get("proposal_recall") or {}
    row.update({c: recall.get(k, math.nan) for c, k in RECALL_KEYS.items()})
    row["coco_AP"] = coco_ap(run.eval_metrics)
    row.update(stability_columns(stability or run_stability(run)))
    row.update({f"AP/{name}": ap for name, ap in (run.summary.get("AP") or {}).items()})
    return row


def regime_label(record: Any) -> str:
    """A run's regime in a few words: ``reference, 512/img`` or ``common, all RoIs`` (``—``
    for a run that recorded none, trained before regimes were)."""
    if not isinstance(record, dict) or "mode" not in record:
        return "—"
    per_image = record.get("rois_per_image")
    budget = "all RoIs" if per_image is None else f"{per_image}/img"
    sigmoid = ", sigmoid" if record.get("classifier") == "sigmoid" else ""
    return f"{record['mode']}, {budget}{sigmoid}"


def detector_words(results: pd.DataFrame) -> str:
    """The detector and its proposals: ``faster-rcnn (RPN proposals)`` or ``fast-rcnn
    (selective_search proposals)``; both, joined, when the runs differ."""
    if "detector" not in results:
        return "fast-rcnn"
    pairs = dict.fromkeys(zip(results["detector"], results["proposals"], strict=True))
    return " and ".join(
        f"{d} ({'RPN' if p == 'rpn' else p} proposals)" if p else str(d) for d, p in pairs
    )


def coco_ap(eval_metrics: dict[str, Any] | None) -> float:
    """COCO AP@[.5:.95] of a final evaluation (``eval/metrics.json``), NaN when not measured.

    It sits under ``coco`` (metric coco, or any metric on a COCO set) or under
    ``metrics.coco.coco`` (metric all).
    """
    m = eval_metrics or {}
    numbers = m.get("coco") or m.get("metrics", {}).get("coco", {}).get("coco") or {}
    value = numbers.get("AP")
    return math.nan if value is None else float(value)


def runs_table(
    runs: Sequence[Run], stability: Mapping[str, RunStability] | None = None
) -> pd.DataFrame:
    """One row per run (``RUN_COLUMNS`` plus ``AP/<class>``), ordered fixed, hnm, ohem, by seed;
    ``stability``: every run's, by ``settled.run_key`` (assessed here when not given)."""
    given = stability or {}
    df = pd.DataFrame([run_row(r, given.get(run_key(r))) for r in runs])
    return sort_samplers(df, ["sampler", "seed"]).reset_index(drop=True)


def load_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run, from run folders and/or compare folders."""
    return runs_table(read_runs(paths))


def _long(runs: Sequence[Run], attr: str) -> pd.DataFrame:
    frames = [
        getattr(r, attr).assign(run=r.name, sampler=r.sampler, seed=r.seed)
        for r in runs
        if not getattr(r, attr).empty
    ]
    if not frames:
        return pd.DataFrame(columns=["run", "sampler", "seed", "iter"])
    return pd.concat(frames, ignore_index=True)


def evals_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Every run's eval history, one row per evaluation (``run, sampler, seed`` + the log's)."""
    return _long(runs, "evals")


def metrics_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Every run's training log, one row per logged iteration (``run, sampler, seed`` + its)."""
    return _long(runs, "metrics")


def sort_samplers(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows ordered fixed, hnm, ohem (others after them, by name), then by the other keys."""
    key = df["sampler"].map(sampler_rank)
    return df.assign(_key=key).sort_values(["_key", *by[1:]]).drop(columns="_key")


def _sampler_row(runs: pd.DataFrame, base_s_per_iter: float) -> dict[str, Any]:
    return {
        "sampler": runs["sampler"].iloc[0],
        "regime": " / ".join(dict.fromkeys(runs["regime"])) if "regime" in runs else "—",
        "mAP": runs["mAP"].mean(),
        "mAP_std": runs["mAP"].std(ddof=1) if len(runs) > 1 else math.nan,
        "recall_300": runs["recall_300"].mean() if "recall_300" in runs else math.nan,
        "coco_AP": runs["coco_AP"].mean() if "coco_AP" in runs else math.nan,
        "train_s": runs["train_seconds"].mean(),
        "mining_s": runs["mining_seconds"].mean(),
        "total_s": runs["total_seconds"].mean(),
        "s_per_iter": runs["s_per_iter"].mean(),
        "s_per_iter_ratio": runs["s_per_iter"].mean() / base_s_per_iter,
        "peak_memory_mb": runs["peak_memory_mb"].mean(),
        "fg_pct": 100.0 * runs["fg_fraction"].mean(),
        "runs": len(runs),
    }


def summary_table(results: pd.DataFrame, time_to_map: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per sampler (``SUMMARY_COLUMNS``): means over seeds; ``time_to_target`` from a
    ``time_to_map_table`` (NaN without one, or when a seed never reached the target)."""
    if results.empty:
        raise UserError("no finished runs to summarise")
    base = results.loc[results["sampler"] == BASELINE, "s_per_iter"]
    base_s = float(base.mean()) if len(base) else math.nan
    rows = [_sampler_row(runs, base_s) for _, runs in results.groupby("sampler", sort=False)]
    table = pd.DataFrame(rows)
    times = {} if time_to_map is None else time_to_map.set_index("sampler")["seconds"].to_dict()
    table["time_to_target"] = [times.get(s, math.nan) for s in table["sampler"]]
    columns = list(SUMMARY_COLUMNS)
    if table["coco_AP"].notna().any():  # only runs that measured it (a COCO set, metric coco)
        columns.insert(columns.index("mAP_std") + 1, "coco_AP")
    return sort_samplers(table[columns], ["sampler"]).reset_index(drop=True)


def per_class_ap(results: pd.DataFrame) -> pd.DataFrame:
    """Per-class AP, mean over seeds: one row per class, one column per sampler."""
    cols = [c for c in results.columns if c.startswith("AP/")]
    table = results.groupby("sampler", sort=False)[cols].mean().T
    table.index = [c.removeprefix("AP/") for c in cols]
    return table[sorted(table.columns, key=sampler_rank)]


def format_cell(column: str, value: Any) -> str:
    """A table cell as text: fixed decimals per column, '—' for missing numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    fmt = _FORMATS.get(column)
    return fmt.format(value) if fmt and isinstance(value, (int, float, np.number)) else str(value)


def formatted(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings with display labels (what rich and markdown show)."""
    return pd.DataFrame(
        {LABELS[c]: [format_cell(c, v) for v in summary[c]] for c in summary.columns}
    )


def _signed(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:+.4f}"


def formatted_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs as strings: ``a − b``, Δ mAP, 95% interval, seeds, verdict."""
    return pd.DataFrame(
        {
            "pair": [f"{a} − {b}" for a, b in zip(pairs["a"], pairs["b"], strict=True)],
            "Δ mAP": [_signed(x) for x in pairs["delta"]],
            "95% interval": [
                "—" if math.isnan(lo) else f"[{_signed(lo)}, {_signed(hi)}]"
                for lo, hi in zip(pairs["ci_low"], pairs["ci_high"], strict=True)
            ],
            "seeds": [str(n) for n in pairs["seeds"]],
            "verdict": list(pairs["verdict"]),
        }
    )


def rich_table(shown: pd.DataFrame, title: str | None = None) -> Table:
    """A rich Table of a formatted (all-string) frame; the first and text columns left-aligned."""
    table = Table(title=title)
    for i, col in enumerate(shown.columns):
        table.add_column(col, justify="left" if i == 0 or col == "verdict" else "right")
    for row in shown.itertuples(index=False):
        table.add_row(*row)
    return table


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """A GitHub markdown table of string-able cells (no tabulate needed)."""
    if index:
        df = df.reset_index()
    header = [str(c) for c in df.columns]
    rows = [[str(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(df: pd.DataFrame) -> str:
    """CSV text of a table (results.csv, summary.csv, pairs.csv)."""
    return df.to_csv(index=False)
