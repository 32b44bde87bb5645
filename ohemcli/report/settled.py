"""Which runs are noise: each run's stability, the pairs they unsettle, one warning per sampler.

A run's own state comes from ``runs.stability.assess_run`` over its evaluation history and
training log. A pair of samplers is "runs not settled" when any run of its paired seeds, on
either side, is not settled, or when the interval alone would call it better or worse while a
run of the pair spreads more over its last evaluations than the pair's |Δ| (the verdict would be
smaller than the runs' own wobble). Each sampler with such a run gets one warning line that names
its worst run (collapsed before unsettled, then the wider spread) with its figures and what to try.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ohemcli.runs.records import Run, log_stability
from ohemcli.runs.stability import (
    COLLAPSED,
    FELL,
    HEALTH_MARGIN,
    LAST_EVALS,
    LOSS_FALL,
    LOSS_FLAT,
    MIN_DROP,
    MIN_LEARNED,
    NEVER_LEARNED,
    SPREAD,
    SPREAD_LIMIT,
    UNSETTLED,
    RunStability,
)

NOT_SETTLED = "runs not settled"  # the verdict of a pair with a run that is not settled
ADVICE = "Try more iterations (--iters), a lower --lr, or pretrained weights (--pretrained SOURCE)."
RISING_ADVICE = "It is still rising: try more iterations (--iters)."
RULES_NOTE = (
    f"A run is collapsed when its final mAP fell below half of its own best evaluation (by at "
    f"least {MIN_DROP}), its training loss fell by less than {1 - LOSS_FALL:.0%}, or over the "
    f"last quarter its classifier gave the chosen foreground RoIs' true class no more than "
    f"{HEALTH_MARGIN} more (or less) probability than the chosen background RoIs' top object "
    f"class (p_true_fg, p_top_bg: stuck at the class prior); unsettled when its evaluations "
    f"after the last lr drop (at least {LAST_EVALS}) spread more than {SPREAD_LIMIT} mAP, when "
    f"it never "
    f"reached {MIN_LEARNED} mAP, or when they spread more than the |Δ| of a pair that its "
    'interval would call better or worse. A pair with such a run gets the verdict "runs not '
    'settled" (pairs.csv keeps what the interval alone says in interval_verdict). The figures of '
    "every run: the Runs table below and results.csv.\n"
)
STABILITY_COLUMNS = [
    "run_state", "state_rule", "state_reason", "last3_spread", "last_quarter_change",
    "best_mAP", "loss_start", "loss_end", "p_true_fg", "p_top_bg",
]  # fmt: skip


def run_key(run: Run) -> str:
    """The key of a run in a stability mapping: its folder (names may repeat across folders)."""
    return str(run.paths.root)


def run_stability(run: Run) -> RunStability:
    """A finished run's stability from its logs, as training recorded it in its summary; the
    summary's final mAP counts when the evaluation log stops before the run's last iteration."""
    last = max((float(i) for i in run.evals["iter"]), default=0.0)
    iters = int(run.summary.get("iters") or last)
    return log_stability(run.evals, run.metrics, iters, run.summary.get("mAP"), run.lr_steps)


def stability_of(runs: Sequence[Run]) -> dict[str, RunStability]:
    """Every run's stability, by :func:`run_key`."""
    return {run_key(r): run_stability(r) for r in runs}


def stability_columns(s: RunStability) -> dict[str, object]:
    """A run's stability as ``STABILITY_COLUMNS`` of the per-run table."""
    values = (
        s.state, s.rule, s.reason, s.last_spread, s.last_quarter_change, s.best_map,
        s.loss_start, s.loss_end, s.p_true_fg, s.p_top_bg,
    )  # fmt: skip
    return dict(zip(STABILITY_COLUMNS, values, strict=True))


def is_called(verdict: str) -> bool:
    """True for a verdict that calls a side: better or worse (with or without a seed note)."""
    return verdict.startswith(("better", "worse"))


@dataclass(frozen=True)
class Flag:
    """Why one run keeps a pair from a verdict."""

    run: Run
    stability: RunStability
    pair: str = ""  # "a − b" when the run is flagged for wobbling more than that pair's Δ
    delta: float = 0.0  # that pair's Δ

    @property
    def rank(self) -> tuple[int, float]:
        """Worst first: collapsed, unsettled, wobbling; then the wider spread."""
        order = {COLLAPSED: 0, UNSETTLED: 1}.get(self.stability.state, 2)
        return order, -(self.stability.last_spread or 0.0)


def pair_flags(
    pairs: Sequence[tuple[Run, Run]],
    stability: Mapping[str, RunStability],
    delta: float,
    interval_verdict: str,
    label: str,
) -> list[Flag]:
    """The runs of a pair's paired seeds that keep it from a verdict (see the module docstring);
    ``label`` names the pair (``a − b``)."""
    flags = []
    for run in (r for pair in pairs for r in pair):
        s = stability[run_key(run)]
        if not s.settled:
            flags.append(Flag(run, s))
        elif is_called(interval_verdict) and (s.last_spread or 0.0) > abs(delta):
            flags.append(Flag(run, s, label, delta))
    return flags


def _figures(flag: Flag) -> str:
    """The run's state and why, then its other figures in brackets."""
    s = flag.stability
    shown = {s.rule}
    if flag.pair:
        head = (
            f"unsettled against {flag.pair}: last {LAST_EVALS} evaluations spread "
            f"{s.last_spread:.3f}, more than its Δ {flag.delta:+.3f}"
        )
        shown = {SPREAD}
    else:
        head = f"{s.state}: {s.reason}"
    extra = []
    if NEVER_LEARNED in shown and s.final_map is not None:
        extra.append(f"final {s.final_map:.3f}")  # the reason gives the best
    elif FELL not in shown and s.final_map is not None and s.best_map is not None:
        extra.append(f"final {s.final_map:.3f}, best {s.best_map:.3f}")
    if SPREAD not in shown and s.last_spread is not None:
        extra.append(f"last {LAST_EVALS} evaluations spread {s.last_spread:.3f}")
    if s.last_quarter_change is not None:
        extra.append(f"last quarter {s.last_quarter_change:+.3f}")
    if LOSS_FLAT not in shown and s.loss_start is not None and s.loss_end is not None:
        extra.append(f"loss {s.loss_start:.2f} -> {s.loss_end:.2f}")
    return head + (f" ({'; '.join(extra)})" if extra else "")


def _advice(s: RunStability) -> str:
    """More iterations for a run that climbed by more than its spread limit over its last
    quarter (it is converging, not swinging); otherwise every lever."""
    rising = s.state == UNSETTLED and (s.last_quarter_change or 0.0) > SPREAD_LIMIT
    return RISING_ADVICE if rising else ADVICE


def warning_lines(runs: Sequence[Run], flags: Sequence[Flag], samplers: Sequence[str]) -> list[str]:
    """One line per sampler (in ``samplers`` order) with a flagged run: its worst run with its
    figures, how many of the sampler's runs are flagged, and what to try."""
    lines = []
    for sampler in samplers:
        mine = [f for f in flags if f.run.sampler == sampler]
        if not mine:
            continue
        worst = min(mine, key=lambda f: f.rank)
        flagged = len({run_key(f.run) for f in mine})
        total = sum(r.sampler == sampler for r in runs)
        lines.append(
            f"{sampler}: {worst.run.name} {_figures(worst)}; {flagged} of {total} {sampler} "
            f"runs not settled. {_advice(worst.stability)}"
        )
    return lines
