"""Comparison plots (matplotlib, Agg backend), each saved atomically under ``DIR/plots/``.

- ``map_vs_time.png``: mAP against train + mining seconds (``eval_history``), one line per run;
- ``loss.png`` and ``fg_fraction.png``: ``metrics.jsonl`` against iteration, one line per run;
- ``per_class_ap.png``: per-class AP, one bar group per class, one bar per sampler (mean over
  seeds, error bars = std when there are several seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ohemcli.fileio import atomic_write  # noqa: E402

PLOT_FILES = ("map_vs_time.png", "loss.png", "fg_fraction.png", "per_class_ap.png")
_COLOURS = {"fixed": "tab:blue", "hnm": "tab:orange", "ohem": "tab:green"}
_STYLES = ("-", "--", ":", "-.")


def _colour(sampler: str) -> str:
    return _COLOURS.get(sampler, "tab:gray")


def _style(results: pd.DataFrame, seed: int) -> str:
    seeds = sorted(results["seed"].unique())
    return _STYLES[seeds.index(seed) % len(_STYLES)]


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """A run's ``metrics.jsonl``; after a resume the last line of a repeated iteration wins."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["iter"])
    lines = [json.loads(s) for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    df = pd.DataFrame(lines)
    if df.empty:
        return pd.DataFrame(columns=["iter"])
    return df.drop_duplicates("iter", keep="last").sort_values("iter")


def read_eval_history(run_dir: Path) -> list[dict[str, Any]]:
    """A run's ``eval_history`` from its summary.json."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    return list(summary.get("eval_history") or [])


def _label(row: Any) -> str:
    return f"{row.sampler} s{row.seed}"


def plot_map_vs_time(results: pd.DataFrame, path: Path) -> Path:
    """mAP against wall-clock train + mining seconds, one line per run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in results.itertuples(index=False):
        hist = sorted(read_eval_history(Path(row.run_dir)), key=lambda p: p["iter"])
        if not hist:
            hist = [{"wall_seconds": row.total_seconds, "mAP": row.mAP}]
        xs, ys = [p["wall_seconds"] for p in hist], [p["mAP"] for p in hist]
        ax.plot(
            xs,
            ys,
            _style(results, row.seed),
            marker="o",
            color=_colour(row.sampler),
            label=_label(row),
        )
    ax.set_xlabel("train + mining seconds")
    ax.set_ylabel("mAP")
    ax.set_title("mAP against wall-clock")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_metric(
    results: pd.DataFrame, key: str, ylabel: str, path: Path, scale: float = 1.0
) -> Path:
    """One ``metrics.jsonl`` column against iteration, one line per run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in results.itertuples(index=False):
        m = read_metrics(Path(row.run_dir))
        if key not in m:
            continue
        ax.plot(
            m["iter"],
            m[key] * scale,
            _style(results, row.seed),
            color=_colour(row.sampler),
            label=_label(row),
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


def write_plots(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """All four plots into ``out_dir/plots/``; returns their paths."""
    plots = Path(out_dir) / "plots"
    return [
        plot_map_vs_time(results, plots / "map_vs_time.png"),
        plot_metric(results, "loss", "training loss of the chosen RoIs", plots / "loss.png"),
        plot_metric(
            results, "fg_fraction", "fg % of chosen RoIs", plots / "fg_fraction.png", 100.0
        ),
        plot_per_class_ap(results, plots / "per_class_ap.png"),
    ]
