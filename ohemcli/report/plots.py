"""Comparison plots (matplotlib, Agg backend), each saved atomically under ``DIR/plots/``.

The plot functions take DataFrames (``report.tables``) and read no files:

- ``map_vs_time``: mAP against train + mining seconds (the eval history), one line per run;
- ``loss`` and ``fg_fraction``: the training log against iteration, one line per run;
- ``per_class_ap.png``: per-class AP, one bar group per class, one bar per sampler (mean over
  seeds, error bars = std when there are several seeds).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ohemcli.engine.run_state import PLOT_NAMES, ComparePaths  # noqa: E402
from ohemcli.fileio import atomic_write  # noqa: E402

PLOTS = PLOT_NAMES[:4]  # what write_plots draws (chosen_iou: when the runs logged iou_hist)
_COLOURS = {"fixed": "tab:blue", "hnm": "tab:orange", "ohem": "tab:green"}
_STYLES = ("-", "--", ":", "-.")


def _colour(sampler: str) -> str:
    return _COLOURS.get(sampler, "tab:gray")


def _style(frame: pd.DataFrame, seed: int) -> str:
    seeds = sorted(frame["seed"].unique())
    return _STYLES[seeds.index(seed) % len(_STYLES)]


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _label(sampler: str, seed: int) -> str:
    return f"{sampler} s{seed}"


def plot_map_vs_time(evals: pd.DataFrame, path: Path) -> Path:
    """mAP against wall-clock train + mining seconds, one line per run.

    ``evals``: one row per evaluation, columns ``run, sampler, seed, iter, wall_seconds, mAP``
    (``tables.evals_frame``).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (_, sampler, seed), hist in evals.groupby(["run", "sampler", "seed"], sort=False):
        hist = hist.sort_values("iter")
        ax.plot(
            hist["wall_seconds"],
            hist["mAP"],
            _style(evals, seed),
            marker="o",
            color=_colour(sampler),
            label=_label(sampler, seed),
        )
    ax.set_xlabel("train + mining seconds")
    ax.set_ylabel("mAP")
    ax.set_title("mAP against wall-clock")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_metric(
    metrics: pd.DataFrame, key: str, ylabel: str, path: Path, scale: float = 1.0
) -> Path:
    """One ``metrics`` column against iteration, one line per run.

    ``metrics``: one row per logged iteration, columns ``run, sampler, seed, iter`` and the logged
    values (``tables.metrics_frame``).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if key in metrics:
        for (_, sampler, seed), m in metrics.groupby(["run", "sampler", "seed"], sort=False):
            m = m.dropna(subset=[key]).sort_values("iter")
            if m.empty:
                continue
            ax.plot(
                m["iter"],
                m[key] * scale,
                _style(metrics, seed),
                color=_colour(sampler),
                label=_label(sampler, seed),
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_per_class_ap(results: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: per-class AP, one bar per sampler (mean over seeds, std as error bars)."""
    from ohemcli.report.tables import per_class_ap

    mean = per_class_ap(results)
    cols = [f"AP/{c}" for c in mean.index]
    std = results.groupby("sampler")[cols].std(ddof=1).T if results["seed"].nunique() > 1 else None
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(mean.index) + 2), 4.2))
    x = np.arange(len(mean.index))
    width = 0.8 / max(1, len(mean.columns))
    for i, sampler in enumerate(mean.columns):
        err = std[sampler].to_numpy() if std is not None and sampler in std else None
        ax.bar(x + (i - (len(mean.columns) - 1) / 2) * width, mean[sampler].to_numpy(), width,
               yerr=err, color=_colour(sampler), label=sampler, capsize=2)  # fmt: skip
    ax.set_xticks(x, list(mean.index), rotation=30, ha="right")
    ax.set_ylabel("AP")
    ax.set_ylim(0, 1)
    ax.set_title("per-class AP (mean over seeds)")
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def write_plots(
    results: pd.DataFrame, evals: pd.DataFrame, metrics: pd.DataFrame, out: ComparePaths
) -> list[Path]:
    """Every plot of ``PLOT_NAMES`` into ``out``'s plots folder; returns their paths."""
    return [
        plot_map_vs_time(evals, out.plot("map_vs_time")),
        plot_metric(metrics, "loss", "training loss of the chosen RoIs", out.plot("loss")),
        plot_metric(metrics, "fg_fraction", "fg % of chosen RoIs", out.plot("fg_fraction"), 100.0),
        plot_per_class_ap(results, out.plot("per_class_ap")),
    ]
