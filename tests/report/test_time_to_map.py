"""Time to accuracy: interpolation, runs that never get there, speed-ups, the default target."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ohemcli.report.time_to_map import (
    default_target,
    seconds_to_reach,
    time_to_map_sentences,
    time_to_map_table,
)
from ohemcli.runs.records import read_run
from tests.report.fake_runs import fake_run


def curve(points: list[tuple[float, float]]) -> list[dict]:
    """Eval history from (wall seconds, mAP) points, one per eval iteration."""
    return [
        {"iter": 10 * (k + 1), "mAP": m, "train_seconds": t, "mining_seconds": 0.0,
         "wall_seconds": t}
        for k, (t, m) in enumerate(points)
    ]  # fmt: skip


def test_linear_interpolation_between_eval_points() -> None:
    evals = pd.DataFrame(curve([(100, 0.1), (200, 0.3), (300, 0.5), (400, 0.7)]))
    assert seconds_to_reach(evals, 0.6) == (350.0, False)
    assert seconds_to_reach(evals, 0.5) == (300.0, False)  # reached exactly at a point
    assert seconds_to_reach(evals, 0.05) == (100.0, True)  # first point: an upper bound only
    t, bound = seconds_to_reach(evals, 0.8)
    assert math.isnan(t) and not bound
    # Only the first crossing counts, even if the curve dips below again.
    dip = pd.DataFrame(curve([(100, 0.2), (200, 0.6), (300, 0.4), (400, 0.8)]))
    assert seconds_to_reach(dip, 0.5) == (175.0, False)


def test_speedups_and_a_run_that_never_reaches_the_target(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # ohem crosses 0.70 at 310 s, hnm at 690 s, fixed never (seed 2 of it stops at 0.65).
    fake_run(runs, "ohem", 1, 0.8, curve([(200, 0.5), (420, 0.9)]))
    fake_run(runs, "hnm", 1, 0.75, curve([(600, 0.61), (700, 0.71), (800, 0.75)]))
    fake_run(runs, "fixed", 1, 0.72, curve([(500, 0.6), (1000, 0.72)]))
    fake_run(runs, "fixed", 2, 0.65, curve([(500, 0.6), (1000, 0.65)]))
    table = time_to_map_table([read_run(p) for p in sorted(runs.iterdir())], 0.70)
    by = table.set_index("sampler")
    assert list(table["sampler"]) == ["fixed", "hnm", "ohem"]
    assert by.loc["ohem", "seconds"] == pytest.approx(310.0)
    assert by.loc["hnm", "seconds"] == pytest.approx(690.0)
    assert math.isnan(by.loc["fixed", "seconds"])
    assert (by.loc["fixed", "reached"], by.loc["fixed", "runs"]) == (1, 2)
    assert [r["seconds"] for r in by.loc["fixed", "per_run"]] == [pytest.approx(916.6666), None]
    assert by.loc["ohem", "speedup_vs_hnm"] == pytest.approx(690 / 310)
    assert math.isnan(by.loc["ohem", "speedup_vs_fixed"])
    lines = time_to_map_sentences(table)
    assert lines == [
        "fixed does not reach 0.700 mAP (1 of 2 runs do).",
        "hnm reaches 0.700 mAP in 690 s, fixed does not.",
        "ohem reaches 0.700 mAP in 310 s, hnm in 690 s: 2.2x, fixed does not.",
    ]
    assert not any("nan" in line for line in lines)


def test_default_target_is_95_percent_of_the_weakest_sampler(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_run(runs, "ohem", 1, 0.8)
    fake_run(runs, "fixed", 1, 0.5)
    fake_run(runs, "fixed", 2, 0.7)  # fixed's final mAP: mean 0.6
    assert default_target([read_run(p) for p in runs.iterdir()]) == pytest.approx(0.95 * 0.6)
