"""Table maths on hand-made results, and rendering of hand-made run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ohemcli.errors import UserError
from ohemcli.report import analysis, tables
from ohemcli.report.plots import CHOSEN_IOU_SKIPPED
from ohemcli.report.render import write_analysis, write_report
from ohemcli.runs.paths import PLOT_NAMES
from ohemcli.runs.records import read_run
from tests.report.fake_runs import fake_run


def make_results(
    maps: dict[str, list[float]], s_per_iter: dict[str, float] | None = None
) -> pd.DataFrame:
    """One row per (sampler, seed); seeds are 1..n in list order."""
    rows = []
    for sampler, values in maps.items():
        for seed, value in enumerate(values, start=1):
            rows.append(
                {
                    "sampler": sampler, "seed": seed, "mAP": value, "train_seconds": 10.0 * seed,
                    "mining_seconds": 2.0 if sampler == "hnm" else 0.0,
                    "total_seconds": 10.0 * seed + (2.0 if sampler == "hnm" else 0.0),
                    "s_per_iter": (s_per_iter or {}).get(sampler, 0.1),
                    "peak_memory_mb": 100.0, "fg_fraction": 0.25, "setting": "abc",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def row(summary: pd.DataFrame, sampler: str) -> pd.Series:
    return summary.set_index("sampler").loc[sampler]


def test_summary_means_ratios_and_time_to_target() -> None:
    results = make_results(
        {"ohem": [0.55, 0.65], "fixed": [0.50, 0.60], "hnm": [0.52, 0.5]},
        {"fixed": 0.1, "ohem": 0.15, "hnm": 0.1},
    )
    ttm = pd.DataFrame({"sampler": ["ohem", "fixed", "hnm"], "seconds": [310.0, 500.0, math.nan]})
    summary = tables.summary_table(results, ttm)
    assert list(summary.columns) == tables.SUMMARY_COLUMNS
    assert list(summary["sampler"]) == ["fixed", "hnm", "ohem"]
    ohem, hnm = row(summary, "ohem"), row(summary, "hnm")
    assert ohem["mAP"] == pytest.approx(0.60) and ohem["mAP_std"] == pytest.approx(0.0707106781)
    assert ohem["s_per_iter_ratio"] == pytest.approx(1.5)
    assert hnm["mining_s"] == 2.0 and hnm["total_s"] == pytest.approx(17.0)
    assert ohem["fg_pct"] == pytest.approx(25.0) and ohem["runs"] == 2
    assert ohem["time_to_target"] == 310.0 and math.isnan(hnm["time_to_target"])
    one = tables.summary_table(make_results({"ohem": [0.5]}))
    assert math.isnan(row(one, "ohem")["mAP_std"]) and math.isnan(
        row(one, "ohem")["s_per_iter_ratio"]
    )
    with pytest.raises(UserError, match="no finished runs"):
        tables.summary_table(pd.DataFrame())


def test_renderers() -> None:
    summary = tables.summary_table(make_results({"fixed": [0.5], "ohem": [0.55]}))
    shown = tables.formatted(summary)
    assert list(shown.loc[1, ["mAP", "mAP std", "s to target"]]) == ["0.5500", "—", "—"]
    md = tables.markdown_table(shown).splitlines()
    assert md[0].startswith("| sampler | regime | mAP |") and md[1].startswith("|---|")
    assert len(md) == 4
    assert tables.to_csv(summary).splitlines()[0] == ",".join(tables.SUMMARY_COLUMNS)
    assert tables.rich_table(shown).row_count == 2
    pairs = pd.DataFrame(
        [["ohem", "hnm", 0.0123, 0.002, 0.0231, 3, "better", "t"],
         ["ohem", "fixed", 0.01, math.nan, math.nan, 1, "1 seed", "t"]],
        columns=["a", "b", "delta", "ci_low", "ci_high", "seeds", "verdict", "method"],
    )  # fmt: skip
    shown = tables.formatted_pairs(pairs)
    assert shown.iloc[0].tolist() == ["ohem − hnm", "+0.0123", "[+0.0020, +0.0231]", "3", "better"]
    assert shown.iloc[1]["95% interval"] == "—"


def test_load_runs_from_compare_and_run_folders(tmp_path: Path) -> None:
    cmp = tmp_path / "cmp"
    for sampler, value in (("ohem", 0.4), ("fixed", 0.3)):
        fake_run(cmp / "runs", sampler, 1, value)
    loose = fake_run(tmp_path / "loose", "hnm", 1, 0.35).root
    results = tables.load_runs([cmp, loose])
    assert list(results["sampler"]) == ["fixed", "hnm", "ohem"]
    assert set(tables.RUN_COLUMNS) <= set(results.columns)
    assert list(results["AP/ring"]) == pytest.approx([0.15, 0.175, 0.2])
    assert results["setting"].nunique() == 1
    with pytest.raises(UserError, match="appear twice"):
        tables.load_runs([cmp, cmp / "runs" / "ohem-s1"])
    with pytest.raises(UserError, match="neither a run folder"):
        tables.load_runs([tmp_path])
    with pytest.raises(UserError, match="does not exist"):
        tables.load_runs([tmp_path / "nope"])


def test_long_frames_stack_every_run(tmp_path: Path) -> None:
    for sampler in ("fixed", "ohem"):
        fake_run(tmp_path / "runs", sampler, 1, 0.4)
    runs = tables.read_runs([tmp_path])
    evals, metrics = tables.evals_frame(runs), tables.metrics_frame(runs)
    assert evals.groupby("sampler")["iter"].apply(list).to_dict() == {
        "fixed": [2, 4],
        "ohem": [2, 4],
    }
    assert len(metrics) == 4  # iteration 4 is logged twice per run: the last line wins
    assert set(metrics.columns) >= {"run", "sampler", "seed", "iter", "loss"}


def test_write_report_on_fake_runs(tmp_path: Path) -> None:
    for sampler, value in (("fixed", 0.3), ("ohem", 0.4)):
        fake_run(tmp_path / "runs", sampler, 1, value)
    results = tables.load_runs([tmp_path])
    write_report(tmp_path, results)
    for name in PLOT_NAMES[:-1]:
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000
    assert not (tmp_path / "plots" / "chosen_iou.png").exists()  # these runs logged no iou_hist
    report = (tmp_path / "report.md").read_text()
    assert "![map_vs_time](plots/map_vs_time.png)" in report and CHOSEN_IOU_SKIPPED in report
    assert "| ohem − fixed | +0.1000 | — | 1 | 1 seed: cannot tell Δ from seed noise |" in report
    assert "```yaml" in report and "- torch:" in report
    assert "paired t-interval over seeds" in report
    assert "Eval protocol (every run): not recorded" in report
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == tables.SUMMARY_COLUMNS
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert pairs[["a", "b"]].values.tolist() == [["ohem", "fixed"]]
    assert pairs["delta"].tolist() == pytest.approx([0.1])
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2
    assert not list(tmp_path.glob("**/*.tmp"))


def test_notes_warn_about_protocols_and_sharing(tmp_path: Path) -> None:
    protocol = {"max_dets": 100, "score_thresh": 0.05, "nms": 0.3}
    fake_run(
        tmp_path / "runs",
        "fixed",
        1,
        0.3,
        eval_protocol=protocol,
        concurrent_runs=1,
        devices=["cuda:0"],
    )
    fake_run(tmp_path / "runs", "ohem", 1, 0.4, eval_protocol=protocol, concurrent_runs=3,
             devices=["cuda:0"])  # fmt: skip
    runs = tables.read_runs([tmp_path])
    a = analysis.analyse(runs, bootstrap=0)
    assert analysis.protocol_lines(runs) == [
        "Eval protocol (every run): max_dets=100, score_thresh=0.05, nms=0.3."
    ]
    assert len(a.notes) == 1 and a.notes[0].startswith("Warning: the timing columns compare runs")
    assert "concurrent runs 1, 3" in a.notes[0]
    other = fake_run(tmp_path / "more", "hnm", 1, 0.3, eval_protocol={**protocol, "nms": 0.5})
    runs.append(read_run(other.root))
    lines = analysis.protocol_lines(runs)
    assert (
        lines[0].startswith("Warning")
        and "- hnm-s1: max_dets=100, score_thresh=0.05, nms=0.5" in lines
    )
    write_analysis(tmp_path, analysis.analyse(runs, bootstrap=0), plots=False)
    assert "different eval protocols" in (tmp_path / "report.md").read_text()


def test_same_sharing_gives_no_warning(tmp_path: Path) -> None:
    for sampler in ("fixed", "ohem"):
        fake_run(tmp_path / "runs", sampler, 1, 0.3, concurrent_runs=2, devices=["cuda:0"])
    assert analysis.analyse(tables.read_runs([tmp_path]), bootstrap=0).notes == []


def test_json_is_one_object_with_every_part(tmp_path: Path) -> None:
    for sampler, value in (("fixed", 0.3), ("hnm", 0.35), ("ohem", 0.4)):
        fake_run(tmp_path / "runs", sampler, 1, value)
    payload = json.loads(analysis.to_json(analysis.analyse(tables.read_runs([tmp_path]), 0)))
    assert {"runs", "samplers", "pairs", "time_to_map"} <= set(payload)
    assert [(p["a"], p["b"]) for p in payload["pairs"]] == [
        ("ohem", "hnm"),
        ("ohem", "fixed"),
        ("hnm", "fixed"),
    ]
    assert {"a", "b", "delta", "ci_low", "ci_high", "seeds", "verdict"} <= set(payload["pairs"][0])
    assert payload["pairs"][0]["ci_low"] is None  # NaN is null
    assert payload["target_map"] == pytest.approx(0.95 * 0.3)
    assert [t["sampler"] for t in payload["time_to_map"]] == ["fixed", "hnm", "ohem"]


def test_a_broken_compare_yaml_is_one_line_in_ohem_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ohemcli.cli import app

    fake_run(tmp_path / "runs", "fixed", 1, 0.5)
    (tmp_path / "compare.yaml").write_text("[1, 2]\n")
    done = CliRunner().invoke(app, ["report", str(tmp_path), "--bootstrap", "0", "--no-plots"])
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "compare.yaml: not a compare settings file" in lines[0]
