"""Plots take DataFrames: the chosen-RoI IoU mix by hand, and skipping runs without it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ohemcli.report.plots import IOU_BINS, iou_mix, plot_chosen_iou, write_plots
from ohemcli.report.tables import evals_frame, metrics_frame, read_runs, runs_table
from ohemcli.runs.paths import ComparePaths
from tests.report.fake_runs import fake_run


def hist(**bins: int) -> list[int]:
    """A 10-bin histogram from {"b<k>": count}."""
    h = [0] * IOU_BINS
    for key, count in bins.items():
        h[int(key[1:])] = count
    return h


def frame(rows: list[tuple[str, int, int, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sampler", "seed", "iter", "iou_hist"])


def test_iou_mix_sums_seeds_then_shares() -> None:
    metrics = frame([
        ("ohem", 1, 10, hist(b0=1, b9=3)),
        ("ohem", 2, 10, hist(b0=1, b9=1)),
        ("ohem", 1, 20, hist(b5=4)),
        ("ohem", 2, 20, math.nan),  # a line from before iou_hist was logged
        ("hnm", 1, 10, hist(b1=2)),
    ])  # fmt: skip
    x, shares = iou_mix(metrics, "ohem")
    assert x.tolist() == [10.0, 20.0]
    assert shares[0].tolist() == pytest.approx([2 / 6] + [0] * 8 + [4 / 6])
    assert shares[1].tolist() == pytest.approx([0] * 5 + [1.0] + [0] * 4)
    assert iou_mix(metrics, "fixed") is None
    assert iou_mix(metrics.drop(columns="iou_hist"), "ohem") is None


def test_long_runs_are_grouped_into_windows() -> None:
    metrics = frame([("ohem", 1, 10 * k, hist(b0=k, b9=1)) for k in range(1, 51)])
    x, shares = iou_mix(metrics, "ohem")
    assert len(x) == 25 and x[0] == pytest.approx(15.0)  # iterations 10 and 20
    assert shares[0][0] == pytest.approx(3 / 5)  # (1 + 2) of (1 + 2 + 1 + 1)
    assert np.allclose(shares.sum(axis=1), 1.0)


def test_chosen_iou_plot_is_drawn_or_skipped(tmp_path: Path) -> None:
    logged = [{"iter": i, "loss": 1.0, "fg_fraction": 0.25, "iou_hist": hist(b0=5, b7=i)}
              for i in (2, 4)]  # fmt: skip
    for sampler in ("hnm", "ohem"):
        fake_run(tmp_path / "new" / "runs", sampler, 1, 0.4, metrics=logged)
        fake_run(tmp_path / "old" / "runs", sampler, 1, 0.4)
    for name, expect in (("new", True), ("old", False)):
        runs = read_runs([tmp_path / name])
        out = ComparePaths(tmp_path / name)
        drawn, skipped = write_plots(runs_table(runs), evals_frame(runs), metrics_frame(runs), out)
        assert (out.plot("chosen_iou") in drawn) == expect and bool(skipped) != expect
        assert out.plot("chosen_iou").is_file() == expect
    assert plot_chosen_iou(pd.DataFrame(columns=["sampler", "iter"]), tmp_path / "x.png") is None


def test_eight_samplers_and_a_plugin_get_small_multiples_and_their_own_colours(
    tmp_path: Path,
) -> None:
    from ohemcli.report import plots

    names = ["fixed", "hnm", "ohem", "ohem-mmdet", "libra", "pisa", "sampling-free", "focal",
             "mypkg.mod:Mine"]  # fmt: skip
    for k, sampler in enumerate(names):
        logged = [{"iter": i, "loss": 1.0 / i + k, "fg_fraction": 0.25,
                   "iou_hist": hist(b0=5, b7=i)} for i in (2, 4)]  # fmt: skip
        history = [{"iter": i, "mAP": 0.1 * k, "train_seconds": i, "mining_seconds": 0,
                    "wall_seconds": float(i)} for i in (2, 4)]  # fmt: skip
        fake_run(tmp_path / "runs", sampler, 1, 0.4, history=history, metrics=logged)
    runs = read_runs([tmp_path])
    drawn = []
    real_save = plots.save_figure

    def keep(fig, path):  # the figure's visible panels, before it is saved and closed
        drawn.append((path.name, [a.get_title() for a in fig.axes if a.get_visible()]))
        return real_save(fig, path)

    plots.save_figure = keep
    try:
        write_plots(
            runs_table(runs), evals_frame(runs), metrics_frame(runs), ComparePaths(tmp_path)
        )
    finally:
        plots.save_figure = real_save
    panels = dict(drawn)
    assert panels["map_vs_time.png"] == names  # one panel per sampler, in report order
    assert panels["chosen_iou.png"] == names
    colours = {plots._colour(n) for n in names}
    assert len(colours) == len(names)  # no two samplers share a colour
