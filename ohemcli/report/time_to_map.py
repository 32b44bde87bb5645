"""Time to accuracy: the wall-clock (train + mining seconds) at which a run first reaches a mAP.

Between two evaluations the mAP is taken as linear in seconds, so the time is interpolated
between the last point below the target and the first at or above it. A run whose first
evaluation is already at the target gets that evaluation's time as an upper bound (``≤``); a
run that never reaches it gets no number. A sampler's time is the mean over its seeds, given only
when every seed reached the target; speed-ups compare those means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ohemcli.report.pairs import sampler_rank
from ohemcli.runs.records import Run

DEFAULT_SHARE = 0.95  # default target: this share of the lowest final mAP among the samplers
TTM_COLUMNS = [
    "sampler", "target", "seconds", "upper_bound", "reached", "runs", "per_run",
    "speedup_vs_hnm", "speedup_vs_fixed",
]  # fmt: skip


def seconds_to_reach(evals: pd.DataFrame, target: float) -> tuple[float, bool]:
    """(seconds, upper_bound) at which ``evals`` (``wall_seconds``, ``mAP`` by ``iter``) first
    reaches ``target``; (NaN, False) when it never does."""
    hist = evals.dropna(subset=["mAP", "wall_seconds"]).sort_values("iter")
    t, m = hist["wall_seconds"].to_numpy(float), hist["mAP"].to_numpy(float)
    hit = np.flatnonzero(m >= target)
    if len(hit) == 0:
        return math.nan, False
    k = int(hit[0])
    if k == 0:
        return float(t[0]), True
    share = (target - m[k - 1]) / (m[k] - m[k - 1])  # m[k-1] < target <= m[k]
    return float(t[k - 1] + share * (t[k] - t[k - 1])), False


def default_target(runs: Sequence[Run]) -> float:
    """95% of the lowest final mAP among the samplers (each the mean over its seeds)."""
    finals = pd.DataFrame([{"sampler": r.sampler, "mAP": r.summary.get("mAP")} for r in runs])
    finals = finals.dropna()
    return DEFAULT_SHARE * float(finals.groupby("sampler")["mAP"].mean().min())


def time_to_map_table(runs: Sequence[Run], target: float | None = None) -> pd.DataFrame:
    """One row per sampler (``TTM_COLUMNS``); ``per_run``: each seed's seconds (None: never)."""
    target = default_target(runs) if target is None else float(target)
    rows = []
    for sampler in sorted({r.sampler for r in runs}, key=sampler_rank):
        mine = sorted((r for r in runs if r.sampler == sampler), key=lambda r: r.seed)
        times = [(r, *seconds_to_reach(r.evals, target)) for r in mine]
        reached = [s for _, s, _ in times if not math.isnan(s)]
        per_run = [
            {"run": r.name, "seed": r.seed, "upper_bound": u}
            | {"seconds": None if math.isnan(s) else s}
            for r, s, u in times
        ]
        all_reached = len(reached) == len(mine)
        rows.append(
            {
                "sampler": sampler,
                "target": target,
                "seconds": float(np.mean(reached)) if all_reached else math.nan,
                "upper_bound": any(u for _, _, u in times),
                "reached": len(reached),
                "runs": len(mine),
                "per_run": per_run,
            }
        )
    table = pd.DataFrame(rows, columns=TTM_COLUMNS[:-2])
    # A time that is only an upper bound gives no ratio (both times are still shown).
    exact = table["seconds"].where(~table["upper_bound"])
    for base in ("hnm", "fixed"):
        ref = exact[table["sampler"] == base]
        ref_s = float(ref.iloc[0]) if len(ref) else math.nan
        table[f"speedup_vs_{base}"] = [ref_s / s if s > 0 else math.nan for s in exact]
    return table[TTM_COLUMNS]


def _seconds(row: pd.Series) -> str:
    return f"{'≤ ' if row['upper_bound'] else ''}{row['seconds']:.0f} s"


def time_to_map_sentences(table: pd.DataFrame) -> list[str]:
    """Plain sentences, e.g. "ohem reaches 0.700 mAP in 310 s, hnm in 690 s: 2.2x"."""
    if table.empty:
        return []
    target = float(table["target"].iloc[0])
    by = table.set_index("sampler")
    lines = []
    for name, row in by.iterrows():
        if math.isnan(row["seconds"]):
            lines.append(
                f"{name} does not reach {target:.3f} mAP "
                f"({row['reached']} of {row['runs']} runs do)."
            )
            continue
        line = f"{name} reaches {target:.3f} mAP in {_seconds(row)}"
        for base in ("hnm", "fixed"):
            if base == name or base not in by.index:
                continue
            other = by.loc[base]
            if math.isnan(other["seconds"]):
                line += f", {base} does not"
                continue
            ratio = row[f"speedup_vs_{base}"]
            line += f", {base} in {_seconds(other)}"
            line += "" if math.isnan(ratio) else f": {ratio:.1f}x"
        lines.append(line + ".")
    return lines
