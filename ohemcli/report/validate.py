"""Which runs a report may count: every run file a number comes from is checked first.

``runs.records.read_run`` already refuses files that do not parse or hold mistyped fields, and
``evaluation.matches.load_matches`` matches files whose arrays are inconsistent. What is left is a
file that is well formed but not what training wrote: a null or NaN mAP, an mAP outside [0, 1],
or a matches file edited consistently (all detections true positives, say). The matches are
therefore rescored with our VOC evaluator and must give the run's recorded mAP: summary.json
keeps the full float, and the matches rescore to it up to float rounding (about 1e-16), so
``MAP_TOLERANCE`` only absorbs the order of summation.

The evaluation history (evals.jsonl) must end where the summary does: no evaluation past the
run's iterations, and an evaluation at its last iteration must be the summary's final mAP.
Lines appended by hand would otherwise move the settled window and flip a verdict.

A run that fails is left out of every table, pair and plot, with one line naming it; a pair's
"seeds" column then says with how many seeds it was computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ohemcli.errors import UserError, quote
from ohemcli.evaluation.matches import load_matches, rescored_map
from ohemcli.evaluation.voc_ap import APMetric
from ohemcli.runs.records import Run

MAP_TOLERANCE = 1e-6
# The metric at the top of summary.json -> the VOC rule the matches rescore with (COCO AP cannot
# be rescored from VOC matches, and such runs never use their matches).
VOC_RULE: dict[str, APMetric] = {"voc07": "voc07", "all": "voc07", "voc10": "voc10"}


def run_problem(run: Run) -> str | None:
    """Why ``run`` cannot be counted (one phrase naming the file at fault), or None."""
    value = run.summary.get("mAP")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{run.paths.summary}: mAP = {quote(value)}, not a number"
    if not 0.0 <= value <= 1.0:
        return f"{run.paths.summary}: mAP = {value} is outside [0, 1]"
    history = history_problem(run, float(value))
    if history is not None:
        return history
    rule = VOC_RULE.get(str(run.summary.get("metric", "voc07")))
    if rule is None or not run.paths.matches.is_file():
        return None  # no matches to use: the pair falls back to the t-interval over seeds
    try:
        matches = load_matches(run.paths.matches)
    except UserError as exc:
        return str(exc)
    again = rescored_map(matches, rule)
    if not abs(again - float(value)) <= MAP_TOLERANCE:
        return (
            f"{run.paths.matches}: rescores to mAP {again:.6f}, the run recorded {value:.6f} "
            f"in {run.paths.summary.name}"
        )
    return None


def history_problem(run: Run, final_map: float) -> str | None:
    """Why the run's evaluation history disagrees with its summary (one phrase), or None."""
    iters = run.summary.get("iters")
    evals = run.evals.dropna(subset=["iter"])
    if not isinstance(iters, int) or evals.empty:
        return None
    last = evals.iloc[-1]  # read_log sorts by iter
    if float(last["iter"]) > iters:
        return (
            f"{run.paths.evals}: an evaluation at iteration {last['iter']:g}, past the run's "
            f"{iters} iterations in {run.paths.summary.name}"
        )
    at_end = None if last["mAP"] is None else float(last["mAP"])  # NaN when the line has none
    if float(last["iter"]) == iters and not (
        at_end is not None and abs(at_end - final_map) <= MAP_TOLERANCE
    ):
        shown = "null" if at_end is None or math.isnan(at_end) else f"{at_end:g}"
        return (
            f"{run.paths.evals}: its last evaluation (iteration {iters}) has mAP {shown}, "
            f"the run recorded {final_map:.6f} in {run.paths.summary.name}"
        )
    return None


def left_out_line(folder: Path | str, reason: str) -> str:
    """The one warning line of a run folder left out of a report."""
    return f"run {Path(folder).name} left out: {reason}"


def checked_runs(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """The runs that pass :func:`run_problem`, and one line for each that does not."""
    kept, lines = [], []
    for run in runs:
        problem = run_problem(run)
        if problem is None:
            kept.append(run)
        else:
            lines.append(left_out_line(run.paths.root, problem))
    return kept, lines
