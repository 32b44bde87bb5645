"""Comparison plots (matplotlib, Agg backend), each saved atomically under ``DIR/plots/``.

The plot functions take DataFrames (``report.tables``) and read no files:

- ``map_vs_time``: mAP against train + mining seconds (the eval history), one line per run;
- ``loss`` and ``fg_fraction``: the training log against iteration, one line per run;
- ``per_class_ap``: per-class AP, one bar group per class, one bar per sampler (mean over
  seeds, error bars = std when there are several seeds);
- ``chosen_iou``: per sampler, the max-IoU mix of the RoIs it trained on over training (the
  ``iou_hist`` of the training log), skipped with a note for runs that did not log it.

Every sampler keeps one colour in every plot (the built-in ones a fixed colour each). With more
than ``CROWDED`` samplers a line plot becomes small multiples, one panel per sampler with the
others in grey behind it, four panels to a row; chosen_iou wraps to four panels a row too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

import zlib  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ohemcli.fileio import atomic_write  # noqa: E402
from ohemcli.report.pairs import sampler_rank  # noqa: E402
from ohemcli.runs.paths import ComparePaths  # noqa: E402

CHOSEN_IOU_SKIPPED = (
    "chosen_iou: skipped, the runs' training logs have no iou_hist (runs from before it was "
    "logged)."
)
_COLOURS = {
    "fixed": "tab:blue", "hnm": "tab:orange", "ohem": "tab:green", "ohem-mmdet": "tab:olive",
    "libra": "tab:purple", "pisa": "tab:brown", "sampling-free": "tab:pink", "focal": "tab:cyan",
}  # fmt: skip
# A user's sampler: one of these, by a hash of its name (the same colour in every report).
_OTHER_COLOURS = ("tab:red", "black", "tab:gray", "#393b79", "#637939", "gold", "#7b4173")
_STYLES = ("-", "--", ":", "-.")
CROWDED = 4  # more samplers than this: small multiples
PANELS_PER_ROW = 4


def _colour(sampler: str) -> str:
    if sampler in _COLOURS:
        return _COLOURS[sampler]
    return _OTHER_COLOURS[zlib.crc32(sampler.encode()) % len(_OTHER_COLOURS)]


def _panels(count: int, width: float = 3.4, height: float = 2.8) -> tuple[Figure, list]:
    """A grid of ``count`` panels, ``PANELS_PER_ROW`` to a row, axes shared (flat list)."""
    cols = min(PANELS_PER_ROW, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols + 1.6, height * rows + 0.6), sharex=True, sharey=True,
        squeeze=False,
    )  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    fig.subplots_adjust(hspace=0.4)
    for i, ax in enumerate(flat[:count]):
        # The panel above an empty slot keeps its own tick labels (sharex hides them otherwise).
        ax.tick_params(labelbottom=i + cols >= count)
    return fig, flat[:count]


def _bottom(axes: list, index: int) -> bool:
    """True when no panel sits below panel ``index`` (it carries the x label)."""
    return index + PANELS_PER_ROW >= len(axes)


def _lines(
    frame: pd.DataFrame,
    x: str,
    y: str,
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str,
    marker: str | None = None,
    scale: float = 1.0,
) -> Path:
    """One line per run of ``frame`` (columns run, sampler, seed, x, y): a single panel, or one
    panel per sampler (others in grey) when there are more than ``CROWDED`` samplers."""
    runs = []
    if y in frame:
        for (_, sampler, seed), m in frame.groupby(["run", "sampler", "seed"], sort=False):
            m = m.dropna(subset=[y]).sort_values(x)
            if not m.empty:
                runs.append((sampler, seed, m[x].to_numpy(), m[y].to_numpy() * scale))
    samplers = sorted({r[0] for r in runs}, key=sampler_rank)
    if len(samplers) <= CROWDED:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for sampler, seed, xs, ys in runs:
            ax.plot(xs, ys, _style(frame, seed), marker=marker, color=_colour(sampler),
                    label=_label(sampler, seed))  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        return save_figure(fig, path)
    fig, axes = _panels(len(samplers))
    for ax, sampler in zip(axes, samplers, strict=True):
        for other, seed, xs, ys in runs:  # context: every other run, thin and grey
            if other != sampler:
                ax.plot(xs, ys, _style(frame, seed), color="0.82", lw=0.8, marker=marker, ms=2)
        for other, seed, xs, ys in runs:
            if other == sampler:
                ax.plot(xs, ys, _style(frame, seed), marker=marker, ms=3,
                        color=_colour(sampler), label=f"s{seed}")  # fmt: skip
        ax.set_title(sampler, color=_colour(sampler))
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes):
        if _bottom(axes, i):
            ax.set_xlabel(xlabel)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel)
    axes[0].legend(fontsize="x-small", title="seed", title_fontsize="x-small")
    fig.suptitle(f"{title or ylabel} (each sampler in colour, the others in grey)")
    return save_figure(fig, path)


def _style(frame: pd.DataFrame, seed: int) -> str:
    seeds = sorted(frame["seed"].unique())
    return _STYLES[seeds.index(seed) % len(_STYLES)]


# SVG (report.html embeds the plots): text stays text, so the page is searchable and small, and
# no date in the file, so that a re-rendered page differs only where its numbers do.
_SVG = {"svg.fonttype": "none", "svg.hashsalt": "ohemcli"}


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` atomically, as PNG or as SVG for a ``.svg`` path, and close it."""
    svg = path.suffix == ".svg"

    def save(p: Path) -> None:
        if not svg:
            fig.savefig(p, format="png", dpi=110, bbox_inches="tight")
            return
        with matplotlib.rc_context(cast(Any, _SVG)):  # rcParams names, which its stubs list
            fig.savefig(p, format="svg", bbox_inches="tight", metadata={"Date": None})

    try:
        atomic_write(path, save)
    finally:
        plt.close(fig)
    return path


def _label(sampler: str, seed: int) -> str:
    return f"{sampler} s{seed}"


def plot_map_vs_time(evals: pd.DataFrame, path: Path) -> Path:
    """mAP against wall-clock train + mining seconds, one line per run.

    ``evals``: one row per evaluation, columns ``run, sampler, seed, iter, wall_seconds, mAP``
    (``tables.evals_frame``). Sorted by iteration, so the line follows training.
    """
    frame = evals.sort_values("iter") if "iter" in evals else evals
    return _lines(frame, "wall_seconds", "mAP", path, "train + mining seconds", "mAP",
                  "mAP against wall-clock", marker="o")  # fmt: skip


def plot_metric(
    metrics: pd.DataFrame, key: str, ylabel: str, path: Path, scale: float = 1.0
) -> Path:
    """One ``metrics`` column against iteration, one line per run.

    ``metrics``: one row per logged iteration, columns ``run, sampler, seed, iter`` and the logged
    values (``tables.metrics_frame``).
    """
    return _lines(metrics, "iter", key, path, "iteration", ylabel, "", scale=scale)


def plot_per_class_ap(results: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: per-class AP, one bar per sampler (mean over seeds, std as error bars)."""
    from ohemcli.report.tables import per_class_ap

    mean = per_class_ap(results)
    cols = [f"AP/{c}" for c in mean.index]
    std = results.groupby("sampler")[cols].std(ddof=1).T if results["seed"].nunique() > 1 else None
    per_class = 0.9 + 0.12 * max(0, len(mean.columns) - 3)  # wider groups for many samplers
    fig, ax = plt.subplots(figsize=(max(6.4, per_class * len(mean.index) + 2), 4.2))
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
    if len(mean.columns) > CROWDED:  # outside, so that it hides no bar
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize="small")
    return save_figure(fig, path)


IOU_BINS = 10  # metrics.jsonl iou_hist: counts in [0, .1), [.1, .2), ..., [.9, 1.0]
MAX_WINDOWS = 25  # the x axis groups the logged lines into at most this many windows


def iou_mix(metrics: pd.DataFrame, sampler: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(iterations (W,), shares (W, 10)): the IoU mix of one sampler's chosen RoIs over training.

    Histograms are summed over seeds at each logged iteration, then over windows of iterations;
    each row of ``shares`` sums to 1. None when the sampler's runs logged no ``iou_hist``.
    """
    if "iou_hist" not in metrics:
        return None
    rows = metrics[(metrics["sampler"] == sampler) & metrics["iou_hist"].map(_is_hist)]
    if rows.empty:
        return None
    by_iter = rows.groupby("iter")["iou_hist"].apply(lambda h: np.sum(np.stack(h), axis=0))
    iters = by_iter.index.to_numpy(float)
    hists = np.stack(by_iter.to_numpy()).astype(float)
    parts = np.array_split(np.arange(len(iters)), min(MAX_WINDOWS, len(iters)))
    x = np.array([iters[p].mean() for p in parts])
    h = np.stack([hists[p].sum(axis=0) for p in parts])
    keep = h.sum(axis=1) > 0
    if not keep.any():
        return None
    return x[keep], h[keep] / h[keep].sum(axis=1, keepdims=True)


def _is_hist(value: object) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and len(value) == IOU_BINS


def plot_chosen_iou(metrics: pd.DataFrame, path: Path) -> Path | None:
    """Per sampler, the share of chosen RoIs in each max-IoU bin against iteration (stacked).

    None (nothing drawn) when no run logged ``iou_hist`` (runs from before it was logged).
    """
    samplers = sorted(set(metrics.get("sampler", pd.Series(dtype=str))), key=sampler_rank)
    mixes = {s: m for s in samplers if (m := iou_mix(metrics, s)) is not None}
    if not mixes:
        return None
    fig, flat = _panels(len(mixes), 3.6, 3.4)
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, IOU_BINS))
    labels = [
        f"[{k / 10:.1f}, {(k + 1) / 10:.1f}{']' if k == IOU_BINS - 1 else ')'}"
        for k in range(IOU_BINS)
    ]
    for i, (ax, (sampler, (x, shares))) in enumerate(zip(flat, mixes.items(), strict=True)):
        ax.stackplot(x, 100 * shares.T, colors=colours, labels=labels)
        # Below the line: background (max IoU < 0.5); above it: foreground.
        ax.plot(x, 100 * shares[:, : IOU_BINS // 2].sum(axis=1), "w--", lw=1.2, label="bg | fg")
        ax.set_title(sampler)
        if _bottom(flat, i):
            ax.set_xlabel("iteration")
        ax.set_ylim(0, 100)
        ax.margins(x=0)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("% of chosen RoIs")
    handles, names = flat[0].get_legend_handles_labels()
    fig.legend(handles[::-1], names[::-1], title="max IoU", loc="center right", fontsize="small")
    fig.subplots_adjust(right=1 - 1.5 / fig.get_figwidth())
    return save_figure(fig, path)


def write_plots(
    results: pd.DataFrame, evals: pd.DataFrame, metrics: pd.DataFrame, out: ComparePaths
) -> tuple[list[Path], list[str]]:
    """Every plot of ``PLOT_NAMES`` into ``out``'s plots folder: (paths drawn, notes on skipped)."""
    drawn = [
        plot_map_vs_time(evals, out.plot("map_vs_time")),
        plot_metric(metrics, "loss", "training loss of the chosen RoIs", out.plot("loss")),
        plot_metric(metrics, "fg_fraction", "fg % of chosen RoIs", out.plot("fg_fraction"), 100.0),
        plot_per_class_ap(results, out.plot("per_class_ap")),
    ]
    iou = plot_chosen_iou(metrics, out.plot("chosen_iou"))
    if iou is None:
        out.plot("chosen_iou").unlink(missing_ok=True)  # a stale plot from earlier runs
        return drawn, [CHOSEN_IOU_SKIPPED]
    return [*drawn, iou], []
