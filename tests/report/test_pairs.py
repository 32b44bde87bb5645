"""Pairs of samplers: order, paired Δ, the bootstrap over test images and seeds, the t fallback."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ohemcli.report.pairs import PAIR_COLUMNS, pair_table, sampler_pairs, t_interval, verdict
from ohemcli.runs.records import read_run
from tests.report.fake_runs import detections, evaluated_run, fake_run, voc_test_set


def good(records, rng):
    """Every object found with a score above every false positive."""
    return detections(records, rng, (0.6, 1.0), (0.0, 0.4))


def mediocre(records, rng):
    """Every object found, but false positives often outrank the hits."""
    return detections(records, rng, (0.2, 0.8), (0.3, 0.9))


def runs_of(root: Path) -> list:
    return [read_run(p) for p in sorted((root / "runs").iterdir())]


def test_pairs_come_ohem_minus_hnm_first() -> None:
    assert sampler_pairs(["fixed", "hnm", "ohem"]) == [
        ("ohem", "hnm"),
        ("ohem", "fixed"),
        ("hnm", "fixed"),
    ]
    assert sampler_pairs(["ohem", "fixed"]) == [("ohem", "fixed")]
    assert sampler_pairs(["ohem"]) == []
    assert sampler_pairs(["zeta", "ohem", "alpha"]) == [
        ("alpha", "zeta"),
        ("alpha", "ohem"),
        ("zeta", "ohem"),
    ]


EIGHT = ["focal", "pisa", "fixed", "ohem", "libra", "hnm", "sampling-free", "ohem-mmdet"]


def test_many_samplers_pair_with_the_baseline_plus_ohem_minus_hnm() -> None:
    assert sampler_pairs(EIGHT) == [
        ("ohem", "hnm"), ("hnm", "fixed"), ("ohem", "fixed"), ("ohem-mmdet", "fixed"),
        ("libra", "fixed"), ("pisa", "fixed"), ("sampling-free", "fixed"), ("focal", "fixed"),
    ]  # fmt: skip
    by_ohem = sampler_pairs(EIGHT, baseline="ohem")
    assert by_ohem[:3] == [("ohem", "hnm"), ("fixed", "ohem"), ("hnm", "ohem")]
    assert len(by_ohem) == 8  # ohem − hnm, then the 7 others against ohem (hnm − ohem as well)
    every = sampler_pairs(EIGHT, all_pairs=True)
    assert len(every) == 8 * 7 // 2 and len(set(every)) == 28
    assert every[:3] == [("ohem", "hnm"), ("ohem", "fixed"), ("hnm", "fixed")]
    four = ["fixed", "libra", "mypkg.mod:Mine", "pisa"]  # no hnm: no ohem − hnm row
    assert sampler_pairs(four) == [
        ("libra", "fixed"),
        ("pisa", "fixed"),
        ("mypkg.mod:Mine", "fixed"),
    ]


def test_a_baseline_that_is_not_compared_is_one_line() -> None:
    from ohemcli.errors import UserError

    with pytest.raises(UserError, match=r"^--baseline: hnm is not among the samplers \(fixed, "):
        sampler_pairs(["fixed", "ohem", "libra", "pisa"], baseline="hnm")
    assert sampler_pairs(["fixed", "ohem"], baseline="hnm") == [("ohem", "fixed")]  # <= 3: all


def test_verdict_needs_an_interval_that_excludes_zero() -> None:
    assert verdict(0.01, 0.03, 3) == "better"
    assert verdict(-0.03, -0.01, 3) == "worse"
    assert verdict(-0.01, 0.03, 3) == "no clear difference"
    assert verdict(0.0, 0.03, 3) == "no clear difference"  # touching 0 is not excluding it
    assert verdict(math.nan, math.nan, 1) == "1 seed: cannot tell Δ from seed noise"
    assert verdict(0.01, 0.03, 1) == "better (1 seed: test set only)"
    assert verdict(math.nan, math.nan, 0) == "no common seed"


def test_t_interval_by_hand() -> None:
    lo, hi = t_interval(np.array([0.030, 0.031, 0.029]))
    half = 4.302652729911275 * 0.001 / math.sqrt(3)  # t(0.975, 2) x s / sqrt(n)
    assert (lo, hi) == pytest.approx((0.030 - half, 0.030 + half))
    assert all(math.isnan(x) for x in t_interval(np.array([0.5])))


def test_better_on_every_image_gives_an_interval_above_zero(tmp_path: Path) -> None:
    records = voc_test_set()
    maps = {}
    for seed in (1, 2, 3):
        maps["ohem", seed] = evaluated_run(tmp_path / "runs", "ohem", seed, good, records)
        maps["hnm", seed] = evaluated_run(tmp_path / "runs", "hnm", seed, mediocre, records)
    table = pair_table(runs_of(tmp_path), bootstrap=300)
    assert list(table.columns) == PAIR_COLUMNS
    row = table.iloc[0]
    assert (row["a"], row["b"], row["seeds"]) == ("ohem", "hnm", 3)
    expected = np.mean([maps["ohem", s] - maps["hnm", s] for s in (1, 2, 3)])
    assert row["delta"] == pytest.approx(expected) and expected > 0
    assert 0 < row["ci_low"] <= row["delta"] <= row["ci_high"]
    assert row["verdict"] == "better" and row["method"].startswith("bootstrap: 300 resamples")


def test_identical_samplers_get_an_interval_around_zero(tmp_path: Path) -> None:
    records = voc_test_set()
    for seed in (1, 2, 3):  # the same detector twice: a Δ of exactly 0 on every resample
        evaluated_run(tmp_path / "same" / "runs", "ohem", seed, mediocre, records, draw=seed)
        evaluated_run(tmp_path / "same" / "runs", "hnm", seed, mediocre, records, draw=seed)
        # ... and two draws of one random detector: different numbers, no real difference
        evaluated_run(tmp_path / "draws" / "runs", "ohem", seed, mediocre, records)
        evaluated_run(tmp_path / "draws" / "runs", "fixed", seed, mediocre, records)
    row = pair_table(runs_of(tmp_path / "same"), bootstrap=200).iloc[0]
    assert (row["delta"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0)
    assert row["verdict"] == "no clear difference"
    row = pair_table(runs_of(tmp_path / "draws"), bootstrap=200).iloc[0]
    assert row["delta"] != 0.0 and row["ci_low"] < 0 < row["ci_high"]
    assert row["verdict"] == "no clear difference"


def test_the_bootstrap_also_covers_the_voc_test_set(tmp_path: Path) -> None:
    """With one seed a t-interval has nothing to go on; resampling the test images still does."""
    records = voc_test_set()
    evaluated_run(tmp_path / "runs", "ohem", 1, good, records)
    evaluated_run(tmp_path / "runs", "hnm", 1, mediocre, records)
    row = pair_table(runs_of(tmp_path), bootstrap=200).iloc[0]
    assert row["seeds"] == 1 and row["ci_high"] - row["ci_low"] > 0.01
    assert row["verdict"] == "better (1 seed: test set only)"
    off = pair_table(runs_of(tmp_path), bootstrap=0).iloc[0]
    assert math.isnan(off["ci_low"]) and off["method"] == "t over seeds"
    assert off["verdict"] == "1 seed: cannot tell Δ from seed noise"


def test_runs_without_matches_fall_back_to_the_t_interval(tmp_path: Path) -> None:
    for seed, (a, b) in enumerate([(0.53, 0.50), (0.631, 0.60), (0.579, 0.55)], start=1):
        fake_run(tmp_path / "runs", "ohem", seed, a)
        fake_run(tmp_path / "runs", "fixed", seed, b)
    row = pair_table(runs_of(tmp_path), bootstrap=100).iloc[0]
    assert row["method"].startswith("t over seeds (no matches.npz")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        t_interval(np.array([0.03, 0.031, 0.029]))
    )
    assert row["verdict"] == "better"


def test_seeds_pair_by_seed_not_by_position(tmp_path: Path) -> None:
    fake_run(tmp_path / "runs", "ohem", 1, 0.6)
    fake_run(tmp_path / "runs", "ohem", 2, 0.7)
    fake_run(tmp_path / "runs", "fixed", 2, 0.65)
    fake_run(tmp_path / "runs", "fixed", 3, 0.1)
    row = pair_table(runs_of(tmp_path), bootstrap=0).iloc[0]
    assert row["seeds"] == 1 and row["delta"] == pytest.approx(0.05)


def test_bootstrap_is_bounded_and_drawn_in_chunks() -> None:
    from ohemcli.errors import UserError
    from ohemcli.report.pairs import DRAW_CHUNK, MAX_BOOTSTRAP, Resampler, check_bootstrap

    with pytest.raises(UserError, match="--bootstrap 1000000000"):
        check_bootstrap(1_000_000_000)
    with pytest.raises(UserError, match="--bootstrap -1"):
        check_bootstrap(-1)
    assert check_bootstrap(MAX_BOOTSTRAP) == MAX_BOOTSTRAP
    big, small = Resampler(DRAW_CHUNK + 7), Resampler(DRAW_CHUNK)
    last = big.weights(1, 5)
    assert last.shape == (7, 5)  # the last chunk holds only what is left
    assert (last.sum(axis=1) == 5).all()  # each resample draws every image slot once
    # The same seed gives the same draw: a longer bootstrap extends a shorter one.
    assert np.array_equal(big.weights(0, 5), small.weights(0, 5))
