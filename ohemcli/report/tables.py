"""Run folders -> pandas tables -> rich / markdown / CSV / JSON, and the paired-seed verdict.

``load_runs`` gives one row per run (``RUN_COLUMNS`` plus ``AP/<class>`` columns);
``summary_table`` gives one row per sampler (``SUMMARY_COLUMNS``), with every Δ paired by seed
against ``fixed``.

The verdict rule (``paired_verdict``): let d_i = mAP(sampler, seed i) - mAP(fixed, seed i) over the
n seeds that both have, d̄ their mean, s their standard deviation (ddof 1) and SE = s / sqrt(n).
A sampler is called better (worse) than fixed only when n >= 2, every d_i has the sign of d̄, and
|d̄| > t(0.975, n-1) x SE (a two-sided paired t-test at 5 %). Otherwise it is "within noise"; with
one seed the table says plainly that a Δ cannot be told apart from noise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from ohemcli.engine.run_state import run_dirs
from ohemcli.engine.runs import Run, read_run
from ohemcli.errors import UserError

BASELINE = "fixed"
SAMPLER_ORDER = ("fixed", "hnm", "ohem")
RUN_COLUMNS = [
    "run", "sampler", "seed", "data", "iters", "metric", "mAP", "train_seconds", "mining_seconds",
    "eval_seconds", "total_seconds", "readonly_seconds", "s_per_iter", "mining_passes",
    "fg_fraction", "peak_memory_mb", "device", "machine", "backbone", "setting", "run_dir",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "sampler", "mAP", "mAP_std", "delta_mAP", "delta_std", "train_s", "mining_s", "total_s",
    "s_per_iter", "s_per_iter_ratio", "peak_memory_mb", "fg_pct", "runs", "paired", "verdict",
]  # fmt: skip
LABELS = {
    "sampler": "sampler", "mAP": "mAP", "mAP_std": "mAP std", "delta_mAP": "Δ mAP vs fixed",
    "delta_std": "Δ std", "train_s": "train s", "mining_s": "mining s", "total_s": "total s",
    "s_per_iter": "s/iter", "s_per_iter_ratio": "s/iter ×fixed", "peak_memory_mb": "peak MB",
    "fg_pct": "fg %", "runs": "runs", "paired": "paired", "verdict": "verdict",
}  # fmt: skip
_FORMATS = {
    "mAP": "{:.4f}", "mAP_std": "{:.4f}", "delta_mAP": "{:+.4f}", "delta_std": "{:.4f}",
    "train_s": "{:.1f}", "mining_s": "{:.1f}", "total_s": "{:.1f}", "s_per_iter": "{:.3f}",
    "s_per_iter_ratio": "{:.2f}", "peak_memory_mb": "{:.0f}", "fg_pct": "{:.1f}",
}  # fmt: skip
ONE_SEED = "1 seed: cannot tell Δ from noise"


def read_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every finished run under ``paths`` (run folders and/or compare folders), one per
    (sampler, seed)."""
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
        runs.extend(read_run(d) for d in found)
    seen: dict[tuple[str, int], list[str]] = {}
    for run in runs:
        seen.setdefault((run.sampler, run.seed), []).append(str(run.paths.root))
    dup = sorted(d for dirs in seen.values() if len(dirs) > 1 for d in dirs)
    if dup:
        raise UserError(
            f"the same sampler and seed appear twice ({', '.join(dup)}); pass one of each"
        )
    return runs


def run_row(run: Run) -> dict[str, Any]:
    """One row: the run's summary, a few config fields and per-class AP as ``AP/<class>``."""
    row = {k: run.summary.get(k) for k in RUN_COLUMNS}
    row.update(
        run=run.name,
        run_dir=str(run.paths.root),
        backbone=run.config.get("model", {}).get("backbone"),
        setting=run.setting,
    )
    row.update({f"AP/{name}": ap for name, ap in (run.summary.get("AP") or {}).items()})
    return row


def runs_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run (``RUN_COLUMNS`` plus ``AP/<class>``), ordered fixed, hnm, ohem, by seed."""
    df = pd.DataFrame([run_row(r) for r in runs])
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
    rank = {name: i for i, name in enumerate(SAMPLER_ORDER)}
    key = df["sampler"].map(lambda s: (rank.get(s, len(rank)), s))
    return df.assign(_key=key).sort_values(["_key", *by[1:]]).drop(columns="_key")


def paired_deltas(results: pd.DataFrame, sampler: str) -> pd.Series:
    """mAP(sampler) - mAP(fixed) for every seed that both have, indexed by seed."""
    by_seed = results.pivot_table(index="seed", columns="sampler", values="mAP", aggfunc="mean")
    if sampler not in by_seed or BASELINE not in by_seed:
        return pd.Series(dtype=float)
    return (by_seed[sampler] - by_seed[BASELINE]).dropna()


def paired_verdict(deltas: Sequence[float]) -> str:
    """The verdict for one sampler's paired Δs (see the module docstring for the rule)."""
    d = np.asarray(deltas, dtype=float)
    if d.size == 0:
        return "no fixed run with the same seed"
    if d.size == 1:
        return ONE_SEED
    from scipy.stats import t

    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size)
    same_sign = bool(np.all(np.sign(d) == np.sign(mean))) and mean != 0.0
    if same_sign and abs(mean) > float(t.ppf(0.975, d.size - 1)) * se:
        return f"{'better' if mean > 0 else 'worse'} than fixed ({d.size} seeds)"
    return f"within noise ({d.size} seeds)"


def _sampler_row(
    runs: pd.DataFrame, results: pd.DataFrame, base: pd.Series | None
) -> dict[str, Any]:
    name = runs["sampler"].iloc[0]
    deltas = paired_deltas(results, name)
    row = {
        "sampler": name,
        "mAP": runs["mAP"].mean(),
        "mAP_std": runs["mAP"].std(ddof=1) if len(runs) > 1 else math.nan,
        "delta_mAP": deltas.mean() if len(deltas) else math.nan,
        "delta_std": deltas.std(ddof=1) if len(deltas) > 1 else math.nan,
        "train_s": runs["train_seconds"].mean(),
        "mining_s": runs["mining_seconds"].mean(),
        "total_s": runs["total_seconds"].mean(),
        "s_per_iter": runs["s_per_iter"].mean(),
        "peak_memory_mb": runs["peak_memory_mb"].mean(),
        "fg_pct": 100.0 * runs["fg_fraction"].mean(),
        "runs": len(runs),
        "paired": len(deltas),
    }
    row["s_per_iter_ratio"] = (
        row["s_per_iter"] / base["s_per_iter"] if base is not None else math.nan
    )
    if name == BASELINE:
        row["verdict"] = "baseline"
    elif base is None:
        row["verdict"] = "no fixed baseline"
    else:
        row["verdict"] = paired_verdict(deltas.to_numpy())
    return row


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per sampler (``SUMMARY_COLUMNS``): means over seeds, Δ paired by seed vs fixed."""
    if results.empty:
        raise UserError("no finished runs to summarise")
    base = None
    if BASELINE in set(results["sampler"]):
        base_runs = results[results["sampler"] == BASELINE]
        base = pd.Series({"s_per_iter": base_runs["s_per_iter"].mean()})
    rows = [_sampler_row(runs, results, base) for _, runs in results.groupby("sampler", sort=False)]
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return sort_samplers(table, ["sampler"]).reset_index(drop=True)


def verdict_text(results: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Plain sentences: what the table does and does not show."""
    lines = []
    if results["setting"].nunique() > 1:
        lines.append(
            "Warning: these runs were trained with different settings; the Δs compare unlike runs."
        )
    if BASELINE not in set(summary["sampler"]):
        lines.append("No fixed run: no Δ can be given.")
    for _, row in summary[summary["sampler"] != BASELINE].iterrows():
        if row["paired"] == 0:
            lines.append(f"{row['sampler']}: no fixed run with the same seed, so no paired Δ.")
        elif row["paired"] == 1:
            lines.append(
                f"{row['sampler']}: Δ mAP {row['delta_mAP']:+.4f} from one seed. One seed cannot "
                "tell a Δ from seed-to-seed noise; run more seeds (--seeds 1,2,3)."
            )
        else:
            lines.append(
                f"{row['sampler']}: Δ mAP {row['delta_mAP']:+.4f} ± {row['delta_std']:.4f} (std of "
                f"{row['paired']} paired seeds): {row['verdict']}."
            )
    lines.append(
        "Rule: a sampler is called better or worse than fixed only when at least 2 seeds agree in "
        "sign and |mean Δ| > t(0.975, n-1) × std/√n (paired t-test, 5 %); otherwise within noise."
    )
    return "\n".join(lines)


def per_class_ap(results: pd.DataFrame) -> pd.DataFrame:
    """Per-class AP, mean over seeds: one row per class, one column per sampler."""
    cols = [c for c in results.columns if c.startswith("AP/")]
    table = results.groupby("sampler", sort=False)[cols].mean().T
    table.index = [c.removeprefix("AP/") for c in cols]
    order = [s for s in SAMPLER_ORDER if s in table.columns]
    return table[order + sorted(c for c in table.columns if c not in order)]


def format_cell(column: str, value: Any) -> str:
    """A table cell as text: fixed decimals per column, '—' for missing numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    fmt = _FORMATS.get(column)
    return fmt.format(value) if fmt and isinstance(value, (int, float, np.number)) else str(value)


def formatted(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings with display labels (what rich and markdown show)."""
    out = pd.DataFrame(
        {LABELS[c]: [format_cell(c, v) for v in summary[c]] for c in summary.columns}
    )
    return out.drop(columns=[LABELS["paired"]])


def rich_table(summary: pd.DataFrame, title: str | None = None) -> Table:
    """A rich Table of the summary."""
    shown = formatted(summary)
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


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NaN as None (JSON null)."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in json.loads(df.to_json(orient="records"))
    ]


def to_json(results: pd.DataFrame, summary: pd.DataFrame, verdict: str) -> str:
    """One JSON object: ``{"summary": [...], "runs": [...], "verdict": "..."}``."""
    return json.dumps(
        {"summary": _records(summary), "runs": _records(results), "verdict": verdict}, indent=2
    )


def results_csv(results: pd.DataFrame) -> str:
    """``results.csv`` text: one row per run."""
    return results.to_csv(index=False)


def summary_csv(summary: pd.DataFrame) -> str:
    """``summary.csv`` text: one row per sampler."""
    return summary.to_csv(index=False)
