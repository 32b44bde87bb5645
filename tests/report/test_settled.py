"""The report says when runs are noise: per-run stability, the pairs' verdicts, one warning line
per sampler, in report.md, the CSVs and the JSON (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ohemcli.report import analysis, tables
from ohemcli.report.render import write_analysis
from ohemcli.report.settled import (
    ADVICE,
    NOT_SETTLED,
    RISING_ADVICE,
    STABILITY_COLUMNS,
    run_stability,
)
from ohemcli.runs.records import read_run
from tests.report.fake_runs import fake_run

FALLING = [2.0, 1.9, 1.5, 1.0, 0.6, 0.5]  # a healthy training loss, one value per evaluation


def history_run(
    root: Path,
    sampler: str,
    seed: int,
    maps: list[float],
    losses: list[float] = FALLING,
    health: dict[str, float] | None = None,
) -> None:
    """A finished run of 100 iterations per evaluation, its final mAP the last of ``maps``;
    ``health`` (p_true_fg, p_top_bg) is logged on every training log line."""
    iters = 100 * len(maps)
    history = [
        {"iter": 100 * (k + 1), "mAP": m, "train_seconds": k + 1.0, "mining_seconds": 0.0,
         "wall_seconds": k + 1.0}
        for k, m in enumerate(maps)
    ]  # fmt: skip
    step = iters // len(losses)
    metrics = [{"iter": step * (k + 1), "loss": v, **(health or {})} for k, v in enumerate(losses)]
    fake_run(root / "runs", sampler, seed, maps[-1], history, metrics, iters=iters)


def analysed(root: Path) -> analysis.Analysis:
    return analysis.analyse(tables.read_runs([root]), bootstrap=0)


def pair(a: analysis.Analysis, first: str, second: str) -> pd.Series:
    return a.pairs.set_index(["a", "b"]).loc[(first, second)]


@pytest.fixture
def collapsed_ohem(tmp_path: Path) -> Path:
    """Issue 21's second set: fixed settles near 0.56, ohem collapses on both seeds."""
    history_run(tmp_path, "fixed", 1, [0.30, 0.45, 0.52, 0.55, 0.56, 0.56])
    history_run(tmp_path, "fixed", 2, [0.31, 0.46, 0.53, 0.55, 0.555, 0.561])
    flat = [1.15, 1.13, 1.10, 1.08, 1.05, 1.03]  # 1.14 -> 1.04
    history_run(tmp_path, "ohem", 1, [0.049, 0.013, 0.015, 0.014, 0.015, 0.015], flat)
    history_run(tmp_path, "ohem", 2, [0.052, 0.020, 0.0145, 0.014, 0.014, 0.014])
    return tmp_path


def test_a_pair_with_a_collapsed_sampler_is_not_called(collapsed_ohem: Path) -> None:
    a = analysed(collapsed_ohem)
    row = pair(a, "ohem", "fixed")
    assert row["interval_verdict"] == "worse"  # what the t-interval alone would say ...
    assert row["verdict"] == NOT_SETTLED  # ... made of broken runs
    assert row["unsettled_runs"] == "ohem-s1, ohem-s2"
    assert row["delta"] == pytest.approx((0.015 - 0.56 + 0.014 - 0.561) / 2)
    # One line for ohem, naming its worst run (both collapsed: the wider last spread) and the
    # figures worked out by hand: last three 0.014, 0.015, 0.015; at iteration 400 (<= 450) 0.014.
    assert a.stability_warnings == [
        "ohem: ohem-s1 collapsed: final 0.015 against its best 0.049 (last 3 evaluations spread "
        "0.001; last quarter +0.001; loss 1.14 -> 1.04); 2 of 2 ohem runs not settled. " + ADVICE
    ]
    assert "more iterations" in ADVICE and "--lr" in ADVICE and "--pretrained" in ADVICE
    states = a.results.set_index("run")["run_state"].to_dict()
    assert states == {
        "fixed-s1": "settled",
        "fixed-s2": "settled",
        "ohem-s1": "collapsed",
        "ohem-s2": "collapsed",
    }


def test_the_files_and_the_json_carry_the_same_fields(collapsed_ohem: Path) -> None:
    a = analysed(collapsed_ohem)
    payload = json.loads(analysis.to_json(a))
    assert payload["stability_warnings"] == a.stability_warnings
    ohem1 = next(r for r in payload["runs"] if r["run"] == "ohem-s1")
    assert set(STABILITY_COLUMNS) <= set(ohem1)
    assert (ohem1["run_state"], ohem1["state_rule"]) == ("collapsed", "fell")
    assert ohem1["last3_spread"] == pytest.approx(0.001)
    assert (ohem1["loss_start"], ohem1["loss_end"]) == pytest.approx((1.14, 1.04))
    assert payload["pairs"][0]["verdict"] == NOT_SETTLED
    assert payload["pairs"][0]["interval_verdict"] == "worse"
    write_analysis(collapsed_ohem, a, plots=False)
    report = (collapsed_ohem / "report.md").read_text()
    assert "## Runs not settled" in report and f"- {a.stability_warnings[0]}" in report
    assert "| ohem − fixed | -0.5460 |" in report and f"| {NOT_SETTLED} |" in report
    assert report.index("## Runs not settled") < report.index("## Results")
    results = pd.read_csv(collapsed_ohem / "results.csv").set_index("run")
    assert results.loc["ohem-s2", "run_state"] == "collapsed"
    assert results.loc["fixed-s1", "last3_spread"] == pytest.approx(0.01)
    pairs = pd.read_csv(collapsed_ohem / "pairs.csv")
    assert pairs.loc[0, "verdict"] == NOT_SETTLED and pairs.loc[0, "interval_verdict"] == "worse"


def test_swinging_runs_warn_once_per_sampler(tmp_path: Path) -> None:
    """Deliberately unsettled runs on both sides: two lines, each naming its widest spread."""
    history_run(tmp_path, "fixed", 1, [0.333, 0.055, 0.216, 0.428, 0.212, 0.40, 0.19, 0.41])
    history_run(tmp_path, "fixed", 2, [0.30, 0.40, 0.42, 0.43, 0.44, 0.45, 0.44, 0.45])
    history_run(tmp_path, "hnm", 1, [0.20, 0.45, 0.30, 0.50, 0.30, 0.38, 0.45, 0.39])
    history_run(tmp_path, "hnm", 2, [0.20, 0.45, 0.30, 0.50, 0.30, 0.48, 0.40, 0.47])
    a = analysed(tmp_path)
    assert len(a.stability_warnings) == 2
    fixed, hnm = a.stability_warnings
    assert fixed.startswith(
        "fixed: fixed-s1 unsettled: last 3 evaluations spread 0.220, more than 0.05 (final "
        "0.410, best 0.428; last quarter +0.010; loss 1.95 -> 0.55); 1 of 2 fixed runs not settled."
    )
    # hnm-s2's last three spread 0.080, hnm-s1's 0.070: the wider is named.
    assert hnm.startswith("hnm: hnm-s2 unsettled: last 3 evaluations spread 0.080, more than")
    assert "2 of 2 hnm runs not settled." in hnm
    row = pair(a, "hnm", "fixed")
    assert row["verdict"] == NOT_SETTLED
    assert row["unsettled_runs"] == "hnm-s1, fixed-s1, hnm-s2"


def test_a_verdict_smaller_than_the_runs_wobble_is_not_called(tmp_path: Path) -> None:
    """Every run is settled by itself, ohem beats fixed by 0.030 on each seed (a t-interval
    above 0), but ohem-s2's last evaluations spread 0.040: more than the Δ it would call."""
    for seed, end in ((1, 0.53), (2, 0.631), (3, 0.579)):
        base = end - 0.030
        history_run(tmp_path, "fixed", seed, [base - 0.1, base - 0.005, base, base])
        wobble = 0.040 if seed == 2 else 0.010
        history_run(tmp_path, "ohem", seed, [end - 0.1, end - wobble, end, end])
    a = analysed(tmp_path)
    row = pair(a, "ohem", "fixed")
    assert row["interval_verdict"] == "better" and row["verdict"] == NOT_SETTLED
    assert row["unsettled_runs"] == "ohem-s2"
    assert a.results.set_index("run").loc["ohem-s2", "run_state"] == "settled"  # by itself
    assert a.stability_warnings == [
        "ohem: ohem-s2 unsettled against ohem − fixed: last 3 evaluations spread 0.040, more "
        "than its Δ +0.030 (final 0.631, best 0.631; last quarter +0.000; loss 1.95 -> 0.55); "
        "1 of 3 ohem runs not settled. " + ADVICE
    ]


def test_settled_runs_keep_their_verdicts(tmp_path: Path) -> None:
    for seed, end in ((1, 0.53), (2, 0.631), (3, 0.579)):
        base = end - 0.030
        history_run(tmp_path, "fixed", seed, [base - 0.1, base - 0.005, base, base])
        history_run(tmp_path, "ohem", seed, [end - 0.1, end - 0.010, end, end])
    a = analysed(tmp_path)
    assert pair(a, "ohem", "fixed")["verdict"] == "better"
    assert pair(a, "ohem", "fixed")["unsettled_runs"] == ""
    assert a.stability_warnings == []
    write_analysis(tmp_path, a, plots=False)
    assert "Runs not settled" not in (tmp_path / "report.md").read_text()


def test_a_wobble_does_not_touch_a_pair_that_is_not_called(tmp_path: Path) -> None:
    """Wobbling more than a Δ the interval does not call is what "no clear difference" says."""
    for seed, (a_end, b_end) in enumerate([(0.55, 0.54), (0.52, 0.54), (0.56, 0.55)], start=1):
        history_run(tmp_path, "fixed", seed, [b_end - 0.1, b_end - 0.04, b_end, b_end])
        history_run(tmp_path, "ohem", seed, [a_end - 0.1, a_end - 0.04, a_end, a_end])
    a = analysed(tmp_path)
    assert pair(a, "ohem", "fixed")["verdict"] == "no clear difference"
    assert a.stability_warnings == []


def test_a_lone_sampler_still_warns(tmp_path: Path) -> None:
    history_run(tmp_path, "ohem", 1, [0.010, 0.004, 0.006, 0.004])
    a = analysed(tmp_path)
    assert a.pairs.empty
    assert a.stability_warnings == [
        "ohem: ohem-s1 unsettled: it never learned, its best mAP 0.010 under 0.05 (final 0.004; "
        "last 3 evaluations spread 0.002; last quarter -0.002; loss 1.95 -> 0.55); 1 of 1 ohem "
        "runs not settled. " + ADVICE
    ]


def test_the_final_map_counts_when_the_history_stops_early(tmp_path: Path) -> None:
    """A run whose evals.jsonl lacks its last evaluation: the summary's mAP is the final one."""
    history = [{"iter": i, "mAP": m, "wall_seconds": i} for i, m in ((2, 0.5), (4, 0.52))]
    paths = fake_run(tmp_path, "fixed", 1, 0.1, history, iters=6)
    s = run_stability(read_run(paths.root))
    assert (s.evaluations, s.final_map, s.best_map, s.state) == (3, 0.1, 0.52, "collapsed")
    assert s.last_quarter_change == pytest.approx(0.1 - 0.52)  # from iteration 4 (<= 4.5)


def test_ohem_report_prints_the_warnings_on_stderr_in_every_format(collapsed_ohem: Path) -> None:
    from typer.testing import CliRunner

    from ohemcli.cli import app

    for fmt in ("table", "json"):
        done = CliRunner().invoke(
            app, ["report", str(collapsed_ohem), "--format", fmt, "--bootstrap", "0"]
        )
        assert done.exit_code == 0, done.output
        warnings = [s for s in done.stderr.splitlines() if s.startswith("Warning: ohem: ohem-s")]
        assert len(warnings) == 1 and "collapsed" in warnings[0], done.stderr
        assert "Warning: fixed" not in done.stderr
        if fmt == "json":
            assert json.loads(done.stdout)["stability_warnings"][0] == warnings[0][9:]


def test_a_run_still_rising_is_told_to_train_longer(tmp_path: Path) -> None:
    history_run(tmp_path, "fixed", 1, [0.05, 0.10, 0.16, 0.24, 0.30, 0.35])
    (line,) = analysed(tmp_path).stability_warnings
    assert line.endswith(RISING_ADVICE) and "unsettled" in line


def _health_run(root: Path, sampler: str, seed: int, maps: list[float], fg: float, bg: float):
    """A run whose loss falls and whose last evaluations agree, with the classifier's health
    ``fg`` (p_true_fg) and ``bg`` (p_top_bg) logged on every line."""
    history_run(root, sampler, seed, maps, health={"p_true_fg": fg, "p_top_bg": bg})


def test_a_classifier_at_the_prior_is_collapsed_though_its_loss_falls_and_evals_agree(tmp_path):
    # issue 32: ohem-mmdet at 64 RoIs per image gave every RoI the class prior (0.10 and 0.10)
    # while its loss fell and its last evaluations agreed; fixed kept them apart (0.62, 0.14).
    for seed in (1, 2):
        _health_run(tmp_path, "fixed", seed, [0.3, 0.5, 0.58, 0.60, 0.60, 0.61], 0.62, 0.14)
        _health_run(tmp_path, "ohem-mmdet", seed, [0.2, 0.24, 0.24, 0.24, 0.24, 0.24], 0.10, 0.10)
    run = read_run(tmp_path / "runs" / "ohem-mmdet-s1")
    s = run_stability(run)
    assert s.loss_end < s.loss_start * 0.5 and s.last_spread == pytest.approx(0.0)
    assert (s.state, s.rule) == ("collapsed", "at_prior")
    assert (s.p_true_fg, s.p_top_bg) == (pytest.approx(0.10), pytest.approx(0.10))
    assert "cannot tell foreground from background" in s.reason
    assert run_stability(read_run(tmp_path / "runs" / "fixed-s1")).state == "settled"
    a = analysed(tmp_path)
    assert pair(a, "ohem-mmdet", "fixed")["verdict"] == NOT_SETTLED
    assert pair(a, "ohem-mmdet", "fixed")["interval_verdict"] == "worse"
    row = a.results.set_index("run").loc["ohem-mmdet-s1"]
    assert row["run_state"] == "collapsed" and row["p_true_fg"] == pytest.approx(0.10)


def test_the_health_rule_reads_only_the_last_quarter(tmp_path):
    # at the prior early on (iterations 100-300 of 600), apart in the last quarter: learning
    maps = [0.3, 0.5, 0.58, 0.60, 0.60, 0.61]
    history = [{"iter": 100 * (k + 1), "mAP": m, "train_seconds": 1.0, "mining_seconds": 0.0,
                "wall_seconds": 1.0} for k, m in enumerate(maps)]  # fmt: skip
    metrics = [
        {"iter": 100 * (k + 1), "loss": v, "p_true_fg": 0.1 if k < 4 else 0.7, "p_top_bg": 0.1}
        for k, v in enumerate(FALLING)
    ]
    fake_run(tmp_path / "runs", "fixed", 1, maps[-1], history, metrics, iters=600)
    s = run_stability(read_run(tmp_path / "runs" / "fixed-s1"))
    assert s.state == "settled" and s.p_true_fg == pytest.approx(0.7)
