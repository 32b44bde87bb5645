"""The pairs as a forest plot: one row per pair, its Δ mAP as a dot and its 95% interval as a
bar, a line at 0. A pair is called better or worse only when its bar misses that line, so the
plot shows at a glance what the verdicts say (``report.pairs``)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ohemcli.report.plots import save_figure

# A verdict's kind -> its colour: called pairs in colour, undecided ones grey, unsettled orange.
COLOURS = {"better": "tab:green", "worse": "tab:red", "unsettled": "tab:orange", "open": "0.45"}


def verdict_kind(verdict: str) -> str:
    """better, worse, unsettled (a run of the pair is noise) or open (no call)."""
    for start, kind in (("better", "better"), ("worse", "worse"), ("runs not", "unsettled")):
        if verdict.startswith(start):
            return kind
    return "open"


def plot_forest(pairs: pd.DataFrame, path: Path) -> Path | None:
    """Δ mAP of each pair (``pairs.PAIR_COLUMNS``) with its interval; None without pairs.

    A pair without an interval (one seed, t over seeds) gets its dot alone.
    """
    if pairs.empty:
        return None
    rows = list(pairs.itertuples(index=False))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.42 * len(rows)))
    for y, row in enumerate(rows):
        colour = COLOURS[verdict_kind(str(row.verdict))]
        if not (math.isnan(row.ci_low) or math.isnan(row.ci_high)):
            ax.plot([row.ci_low, row.ci_high], [y, y], color=colour, lw=2.2, solid_capstyle="butt")
        ax.plot([row.delta], [y], "o", color=colour, ms=6)
    ax.axvline(0.0, color="0.3", lw=0.9, ls="--")
    ax.set_yticks(range(len(rows)), [f"{r.a} − {r.b}" for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first pair (the paper's question) on top
    ax.set_xlabel("Δ mAP (95% interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("pairs: Δ mAP and its interval (called only when it misses 0)", fontsize="medium")
    return save_figure(fig, path)
