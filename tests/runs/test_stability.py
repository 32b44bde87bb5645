"""``assess_run``: every rule on hand-made histories, including the two of issue 21."""

from __future__ import annotations

import json
import math

import pytest

from ohemcli.runs.stability import (
    COLLAPSED,
    FELL,
    LOSS_FLAT,
    NEVER_LEARNED,
    NO_EVALUATION,
    SETTLED,
    SPREAD,
    SPREAD_LIMIT,
    UNSETTLED,
    assess_run,
)


def evals(*maps: float, every: int = 100) -> list[tuple[int, float]]:
    """Evaluations at every ``every`` iterations: (100, maps[0]), (200, maps[1]), ..."""
    return [(every * (k + 1), m) for k, m in enumerate(maps)]


# A training log whose loss falls from 2.0 to 0.5 (each end's mean of two lines: 1.95, 0.55).
FALLING = [(100, 2.0), (200, 1.9), (400, 1.2), (700, 0.6), (800, 0.5)]


def test_issue_21_fixed_seed_1_is_flagged() -> None:
    """It swung (0.333 -> 0.055 -> 0.428) and then fell to 0.012 and stayed there: the last three
    evaluations barely move, so it is the fall from its best that flags it."""
    s = assess_run(evals(0.333, 0.055, 0.216, 0.428, 0.012, 0.013, 0.019, 0.012), FALLING, 800)
    assert (s.state, s.rule) == (COLLAPSED, FELL) and not s.settled
    assert s.reason == "final 0.012 against its best 0.428"
    assert s.last_spread == pytest.approx(0.019 - 0.012)
    assert s.last_quarter_change == pytest.approx(0.012 - 0.013)  # against iteration 600
    assert (s.best_map, s.final_map, s.evaluations) == (0.428, 0.012, 8)


def test_issue_21_ohem_seed_1_collapsed_though_its_end_is_steady() -> None:
    s = assess_run(evals(0.049, 0.013, 0.015, 0.014, 0.015, 0.015), FALLING, 600)
    assert s.last_spread == pytest.approx(0.001)  # "settled" at 0.015 by its spread alone
    assert s.state == COLLAPSED and s.reason == "final 0.015 against its best 0.049"


def test_a_swinging_run_that_ends_high_is_unsettled() -> None:
    s = assess_run(evals(0.333, 0.055, 0.216, 0.428, 0.212, 0.40, 0.19, 0.41), FALLING, 800)
    assert (s.state, s.rule) == (UNSETTLED, SPREAD)
    assert s.last_spread == pytest.approx(0.41 - 0.19)
    assert s.reason == "last 3 evaluations spread 0.220, more than 0.05"
    assert s.last_quarter_change == pytest.approx(0.41 - 0.40)


def test_a_converged_run_is_settled() -> None:
    s = assess_run(evals(0.267, 0.349, 0.471, 0.519, 0.532, 0.535), FALLING, 600)
    assert s.state == SETTLED and s.settled and s.rule == s.reason == ""
    assert s.last_spread == pytest.approx(0.535 - 0.519)
    assert s.last_quarter_change == pytest.approx(0.535 - 0.519)  # from iteration 400 (<= 450)
    assert s.loss_start == pytest.approx(1.95) and s.loss_end == pytest.approx(0.55)


def test_last_quarter_starts_at_the_evaluation_at_or_before_three_quarters() -> None:
    # 75% of 1000 is 750: the evaluation at 700 counts, the one at 800 does not.
    s = assess_run([(700, 0.40), (800, 0.45), (900, 0.46), (1000, 0.47)], FALLING, 1000)
    assert s.last_quarter_change == pytest.approx(0.07)
    # Evaluated only at the end, or first after 75%: nothing to measure from.
    assert assess_run([(1000, 0.5)], FALLING, 1000).last_quarter_change is None
    assert assess_run([(800, 0.5), (1000, 0.5)], FALLING, 1000).last_quarter_change is None


def test_the_spread_limit_is_strict_and_needs_three_evaluations() -> None:
    below = assess_run(evals(0.60, 0.60 - SPREAD_LIMIT + 0.001, 0.60), FALLING, 300)
    above = assess_run(evals(0.60, 0.60 - SPREAD_LIMIT - 0.001, 0.60), FALLING, 300)
    assert below.state == SETTLED and above.state == UNSETTLED
    two = assess_run(evals(0.1, 0.6), FALLING, 200)  # a big move, but only two evaluations
    assert two.last_spread is None and two.state == SETTLED
    # Only the last three count: an early swing does not unsettle a run that has calmed down.
    assert assess_run(evals(0.1, 0.6, 0.30, 0.60, 0.61, 0.60), FALLING, 600).state == SETTLED


def test_collapse_needs_half_the_best_and_more_than_noise() -> None:
    assert assess_run(evals(0.60, 0.29, 0.29, 0.29), FALLING, 400).state == COLLAPSED
    half_kept = assess_run(evals(0.60, 0.31, 0.31, 0.31), FALLING, 400)
    assert half_kept.state == SETTLED  # a fall, but not below half of the best
    # 0.030 -> 0.012 is under half, but a fall of 0.018 is evaluation noise near zero: that run
    # never learned, which makes it unsettled rather than collapsed.
    never = assess_run(evals(0.030, 0.012, 0.014, 0.012), FALLING, 400)
    assert (never.state, never.rule) == (UNSETTLED, NEVER_LEARNED)
    assert never.reason == "it never learned, its best mAP 0.030 under 0.05"


def test_a_loss_that_did_not_fall_is_a_collapse() -> None:
    # The issue's fixed runs: loss 1.14 -> 1.04 in 800 iterations (9% down), the mAP steady.
    flat = [(100, 1.15), (200, 1.13), (400, 1.10), (700, 1.05), (800, 1.03)]
    s = assess_run(evals(0.50, 0.51, 0.50), flat, 300)
    assert (s.loss_start, s.loss_end) == pytest.approx((1.14, 1.04))
    assert (s.state, s.rule) == (COLLAPSED, LOSS_FLAT)
    assert s.reason == "training loss 1.14 -> 1.04, less than a 10% fall"
    fell = [(100, 1.15), (200, 1.13), (700, 1.03), (800, 1.01)]  # 1.14 -> 1.02: 10.5% down
    assert assess_run(evals(0.50, 0.51, 0.50), fell, 300).state == SETTLED
    rose = assess_run(evals(0.50, 0.51, 0.50), [(100, 2.0), (800, 2.3)], 300)
    assert rose.state == COLLAPSED and rose.reason == "training loss 2.00 -> 2.30 did not fall"
    diverged = [(100, 1.15), (200, 1.13), (700, 1.0), (800, math.inf)]
    assert assess_run(evals(0.50, 0.51, 0.50), diverged, 300).state == COLLAPSED


def test_short_logs_split_their_lines_between_the_ends() -> None:
    three = assess_run(evals(0.5), [(2, 2.0), (4, 1.5), (6, 1.0)], 6)
    assert (three.loss_start, three.loss_end) == (2.0, 1.0)  # one line at each end
    one = assess_run(evals(0.5), [(2, 2.0)], 6)
    assert (one.loss_start, one.loss_end, one.state) == (None, None, SETTLED)


def test_missing_values_and_order_do_not_matter() -> None:
    shuffled = [(300, 0.52), (100, 0.50), (200, math.nan), (400, 0.53), (200, 0.51)]
    s = assess_run(shuffled, list(reversed(FALLING)), 400)
    assert (s.evaluations, s.final_map, s.best_map) == (4, 0.53, 0.53)
    assert s.last_spread == pytest.approx(0.02) and s.loss_start == pytest.approx(1.95)
    none = assess_run([], FALLING, 400)
    assert (none.state, none.rule) == (
        UNSETTLED,
        NO_EVALUATION,
    ) and none.reason == "no evaluation recorded"
    assert none.final_map is None and none.last_spread is None


def test_to_dict_is_plain_json() -> None:
    s = assess_run(evals(0.5, 0.5), [(1, 1.0), (2, math.inf)], 200)
    d = s.to_dict()
    assert d["loss_end"] is None and d["state"] == COLLAPSED  # an infinite loss did not fall
    assert set(d) == {
        "state", "rule", "reason", "evaluations", "last_spread", "last_quarter_change", "best_map",
        "final_map", "loss_start", "loss_end", "p_true_fg", "p_top_bg",
    }  # fmt: skip
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_the_settled_window_opens_after_the_last_lr_drop():
    # a run that jumps at its drop (600) and is flat after it: the last three evaluations
    # straddle the drop (0.40 -> 0.55), the three after it agree
    evals = [(200, 0.30), (400, 0.38), (600, 0.40), (667, 0.55), (733, 0.553), (800, 0.556)]
    losses = [(100, 2.0), (200, 1.5), (700, 0.8), (800, 0.7)]
    straddling = assess_run(evals[:3] + evals[-1:], losses, 800)
    assert straddling.state == UNSETTLED and straddling.last_spread == pytest.approx(0.556 - 0.38)
    after = assess_run(evals, losses, 800, last_drop=600)
    assert after.state == "settled" and after.last_spread == pytest.approx(0.006)
    # without three evaluations after the drop the last three are the window
    few = assess_run(evals[:4], losses, 800, last_drop=600)
    assert few.last_spread == pytest.approx(0.55 - 0.38)


def test_eval_points_put_three_after_the_last_drop():
    from ohemcli.engine.state import eval_iterations

    assert sorted(eval_iterations(800, 4, [600])) == [600, 667, 733, 800]
    assert sorted(eval_iterations(800, 8, [640])) == [128, 256, 384, 512, 640, 693, 747, 800]
    assert sorted(eval_iterations(40000, 4, [30000])) == [30000, 33333, 36667, 40000]
    assert sorted(eval_iterations(90, 3, [])) == [30, 60, 90]  # no drop: evenly spaced
    assert sorted(eval_iterations(800, 2, [600])) == [700, 800]  # fewer than 3: all after it
    assert eval_iterations(800, 0, [600]) == set()


def test_every_preset_evaluates_three_times_after_its_last_drop():
    from ohemcli.engine.state import eval_iterations
    from ohemcli.presets import load_preset, preset_names

    for name in preset_names():
        t = load_preset(name).train
        last = max(s for s in t.lr_steps if s < t.iters)
        after = [i for i in eval_iterations(t.iters, t.eval_points, t.lr_steps) if i > last]
        assert len(after) >= 3, name
