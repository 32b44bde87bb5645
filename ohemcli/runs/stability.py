"""How settled a run is: from its evaluation history and training losses, is its final mAP a
number to compare, or noise?

:func:`assess_run` reads a run's evaluations (``(iter, mAP)``, the final one included) and its
logged training losses (``(iter, loss)``) and gives a :class:`RunStability` with one of three
states, checked in this order:

- ``collapsed``: the final mAP fell far below the run's own best evaluation (under
  ``COLLAPSE_SHARE`` of it, and by at least ``MIN_DROP``), or the training loss did not fall
  (the mean of the last ``LOSS_POINTS`` logged losses above ``LOSS_FALL`` x the mean of the first
  ``LOSS_POINTS``), or the classifier cannot tell foreground from background (over the last
  quarter of training, the mean probability of the true class on the chosen foreground RoIs is
  within ``HEALTH_MARGIN`` of the mean highest foreground probability on the chosen background
  RoIs: a classifier stuck at the class prior gives both the same value, while its loss still
  falls and its evaluations agree). A collapsed run can look steady at the end (0.015, 0.015,
  0.015): a small spread alone does not make it settled.
- ``unsettled``: the evaluations of the settled window spread (max − min) more than
  ``SPREAD_LIMIT``, or the run never learned (its best evaluation stays under ``MIN_LEARNED``).
  The settled window is the evaluations after the run's last lr drop (the schedule,
  ``engine.state.eval_iterations``, puts ``SETTLE_EVALS`` there), so that a jump at the drop is
  not taken for a wobble; a run with fewer than ``SETTLE_EVALS`` there (no drop, or a log
  written before evaluations were placed so) is judged on its last ``SETTLE_EVALS``.
- ``settled``: neither. With fewer than ``LAST_EVALS`` evaluations the spread cannot be measured
  and only the other rules apply.

``MIN_DROP`` is a floor on the fall rather than on the best mAP: a run that peaked at 0.049 and
ended at 0.015 collapsed (it had learned something and lost two thirds of it), while a run that
moved from 0.010 to 0.004 only wobbled around zero; that run never learned, which is the
``MIN_LEARNED`` rule, and it is reported as unsettled, not collapsed.

Pure Python: no torch, no pandas, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

SPREAD_LIMIT = 0.05
"""Most mAP the last three evaluations of a settled run may spread (max − min).

Why 0.05, measured (one thread per run, 8 evaluations each): runs close to convergence move by
a few hundredths between their last evaluations. On BCCD with cpu_pretrained (1,600
iterations, seeds 1-3, fixed and ohem) the six runs spread 0.003 to 0.021; with the tiny trunk's
conv1-conv4 frozen at lr 0.005 for 800 iterations, 0.005 to 0.022, each within 0.027 of its
best. Short synthetic runs (120 iterations, fixed, hnm and ohem) spread 0.005 to 0.045. Runs
that are still climbing spread more: voc100 (whose test images are its training images) with
cpu_pretrained, 0.06 to 0.16 over its last three evaluations. Noisy CPU runs on small real
photo sets (the tiny net from scratch at lr 0.04) spread 0.2 to 0.4 (one: 0.333, 0.055, 0.216,
0.428, ...). 0.05 sits above the settled runs with a margin and well under the noisy ones; it
is also about the size of the Δs the report is asked to call, so a run that wobbles more than
this cannot support a verdict.
"""
SETTLE_EVALS = 3  # evaluations after the last lr drop: the fewest the spread is taken over
LAST_EVALS = SETTLE_EVALS
HEALTH_MARGIN = 0.02
"""Collapsed: over the last quarter, |mean p(true class) on the foreground RoIs − mean highest
p(object class) on the background RoIs| under this (every candidate RoI of the logged batches,
``engine.health``). Why 0.02, measured on BCCD (bccd_tiny, seed 1, 300 iterations, one
thread; experiments/README.md): ohem-mmdet at 64 RoIs per image, its classifier at the class
prior, 0.109 against 0.111 (|gap| 0.002); fixed 0.604 against 0.148 (0.456); focal 0.33 against
0.20 (0.13); ohem, which trains on the RoIs it gets wrong and is calibrated worst, 0.470 against
0.415 (0.055) while still rising. 0.02 sits ten times above the collapsed gap and well under
ohem's."""
COLLAPSE_SHARE = 0.5  # collapsed: the final mAP is under this share of the run's best ...
MIN_DROP = 0.02  # ... and under it by at least this much mAP (more than evaluation noise)
LOSS_FALL = 0.9  # collapsed: the loss did not end under this share of where it started
LOSS_POINTS = 2  # logged losses averaged at each end of the training log
MIN_LEARNED = 0.05  # unsettled: the best evaluation never reached this mAP
LAST_QUARTER = 0.75  # last_quarter_change starts at the evaluation nearest this share of iters

SETTLED, UNSETTLED, COLLAPSED = "settled", "unsettled", "collapsed"
# The rule that decided a state (RunStability.rule), in the order they are checked.
FELL, LOSS_FLAT, AT_PRIOR, SPREAD, NEVER_LEARNED, NO_EVALUATION = (
    "fell", "loss_flat", "at_prior", "spread", "never_learned", "no_evaluation",
)  # fmt: skip


@dataclass(frozen=True)
class RunStability:
    """How settled one run is (see the module docstring for the rules)."""

    state: str  # SETTLED, UNSETTLED or COLLAPSED
    rule: str  # the rule that decided it: FELL, LOSS_FLAT, SPREAD, ... ("" when settled)
    reason: str  # that rule in words, with its figures ("" when settled)
    evaluations: int  # how many evaluations the history holds
    last_spread: float | None  # max − min over the settled window (None: fewer than 3 evals)
    last_quarter_change: float | None  # final − the mAP at or before 75% of iters (None: none)
    best_map: float | None  # the best evaluation (None: no evaluation)
    final_map: float | None  # the last evaluation (None: no evaluation)
    loss_start: float | None  # mean of the first LOSS_POINTS logged losses (None: < 2 logged)
    loss_end: float | None  # mean of the last LOSS_POINTS logged losses (None: < 2 logged)
    p_true_fg: float | None = None  # last quarter's mean p(true class) on chosen foreground
    p_top_bg: float | None = None  # last quarter's mean max p(fg class) on chosen background

    @property
    def settled(self) -> bool:
        """True when the run's final mAP can be compared (state ``settled``)."""
        return self.state == SETTLED

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (a non-finite number becomes None)."""
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _history(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points with a finite iteration and value, ordered by iteration."""
    kept = [(float(i), float(v)) for i, v in points if _is_number(i) and _is_number(v)]
    return sorted(kept, key=lambda p: p[0])


def _is_number(value: Any) -> bool:
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _loss_ends(losses: Sequence[tuple[float, float]]) -> tuple[float | None, float | None]:
    """Means of the first and last LOSS_POINTS losses; with fewer than 2 * LOSS_POINTS logged
    lines each end takes half of them, so that the two means never share a line."""
    values = [v for _, v in _history(losses)]
    k = min(LOSS_POINTS, len(values) // 2)
    if k == 0:
        return None, None
    return sum(values[:k]) / k, sum(values[-k:]) / k


def _quarter_change(evals: list[tuple[float, float]], iters: int) -> float | None:
    """Final mAP − the mAP of the last evaluation at or before LAST_QUARTER x ``iters``."""
    before = [m for i, m in evals[:-1] if i <= LAST_QUARTER * iters]
    return evals[-1][1] - before[-1] if before else None


def _state(
    best: float,
    final: float,
    spread: tuple[float, int] | None,
    loss: tuple[float | None, float | None],
    health: tuple[float | None, float | None] = (None, None),
) -> tuple[str, str, str]:
    """(state, rule, reason) by the rules of the module docstring, in their order."""
    start, end = loss
    if final < COLLAPSE_SHARE * best and best - final >= MIN_DROP:
        return COLLAPSED, FELL, f"final {final:.3f} against its best {best:.3f}"
    if start is not None and end is not None and not end <= LOSS_FALL * start:
        # A non-finite loss at the end (divergence) counts as not falling.
        fall = f", less than a {1 - LOSS_FALL:.0%} fall" if end < start else " did not fall"
        return COLLAPSED, LOSS_FLAT, f"training loss {start:.2f} -> {end:.2f}{fall}"
    true_fg, top_bg = health
    if true_fg is not None and top_bg is not None and abs(true_fg - top_bg) < HEALTH_MARGIN:
        return (
            COLLAPSED,
            AT_PRIOR,
            (
                f"its classifier cannot tell foreground from background: p(true class) "
                f"{true_fg:.2f} on foreground, top p(object) {top_bg:.2f} on background over the "
                f"last quarter, within {HEALTH_MARGIN}"
            ),
        )
    if spread is not None and spread[0] > SPREAD_LIMIT:
        more = f"more than {SPREAD_LIMIT}"
        return UNSETTLED, SPREAD, f"last {spread[1]} evaluations spread {spread[0]:.3f}, {more}"
    if best < MIN_LEARNED:
        never = f"it never learned, its best mAP {best:.3f} under {MIN_LEARNED}"
        return UNSETTLED, NEVER_LEARNED, never
    return SETTLED, "", ""


def settled_window(history: Sequence[tuple[float, float]], last_drop: int | None) -> list[float]:
    """The mAPs the spread is taken over: those after ``last_drop`` when there are at least
    ``SETTLE_EVALS``, else the last ``SETTLE_EVALS`` (fewer: none)."""
    if last_drop is not None:
        after = [m for i, m in history if i > last_drop]
        if len(after) >= SETTLE_EVALS:
            return after
    tail = [m for _, m in history][-SETTLE_EVALS:]
    return tail if len(tail) == SETTLE_EVALS else []


def last_quarter_health(
    points: Sequence[tuple[float, float | None, float | None]], iters: int
) -> tuple[float | None, float | None]:
    """Means of ``p_true_fg`` and ``p_top_bg`` over the ``(iter, p_true_fg, p_top_bg)`` points
    of the last quarter of ``iters`` (None where no point has a value)."""
    late = [p for p in points if _is_number(p[0]) and float(p[0]) > LAST_QUARTER * iters]

    def mean(k: int) -> float | None:
        values = [float(v) for p in late if (v := p[k]) is not None and _is_number(v)]
        return sum(values) / len(values) if values else None

    return mean(1), mean(2)


def assess_run(
    evals: Sequence[tuple[float, float]],
    losses: Sequence[tuple[float, float]],
    iters: int,
    last_drop: int | None = None,
    health: tuple[float | None, float | None] = (None, None),
) -> RunStability:
    """How settled a run is, from its ``(iter, mAP)`` evaluations (the final one included, as
    the last by iteration), its ``(iter, loss)`` training log, its budget of ``iters``, its last
    lr drop (None: none) and its classifier's health over the last quarter (``(p_true_fg,
    p_top_bg)``, see :func:`last_quarter_health`; None where not logged).

    Points with a missing value are ignored. A run without any evaluation is unsettled.
    """
    history = _history(evals)
    loss = _loss_ends(losses)
    if not history:
        nothing = (UNSETTLED, NO_EVALUATION, "no evaluation recorded", 0, None, None, None, None)
        return RunStability(*nothing, *loss, *health)
    maps = [m for _, m in history]
    best, final = max(maps), maps[-1]
    window = settled_window(history, last_drop)
    spread = max(window) - min(window) if window else None
    measured = None if spread is None else (spread, len(window))
    state, rule, reason = _state(best, final, measured, loss, health)
    change = _quarter_change(history, iters)
    return RunStability(state, rule, reason, len(maps), spread, change, best, final, *loss, *health)
