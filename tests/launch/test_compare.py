"""``compare`` at a tiny budget: every file, reuse without training, resume, a failed run, and
``ohem report``."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.config import ExperimentConfig, load_config
from ohemcli.errors import UserError
from ohemcli.evaluation.matches import run_matches, weighted_map
from ohemcli.launch.compare import check_settings, compare
from ohemcli.launch.grid import run_order
from ohemcli.report import load_runs
from ohemcli.report.plots import CHOSEN_IOU_SKIPPED, PLOTS
from ohemcli.report.render import write_report
from ohemcli.report.tables import RUN_COLUMNS, SUMMARY_COLUMNS
from ohemcli.runs.records import read_run

pytestmark = pytest.mark.slow
runner = CliRunner()
SAMPLERS = ["fixed", "hnm", "ohem"]
TINY = {
    "data": {"max_proposals": 200, "scale": 160, "max_size": 214, "workers": 0},
    "model": {"backbone": "tiny", "head_dim": 64},
    "sampler": {"batch_rois": 32},
    "train": {
        "iters": 6, "eval_points": 2, "log_every": 2, "checkpoint_every": 2, "lr": 0.01,
        "device": "cpu",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExperimentConfig]:
    """A config file over a synthetic set of 8 trainval / 4 test images."""
    from ohemcli.data.synthetic import generate_synthetic

    tmp = tmp_path_factory.mktemp("cmp")
    root = generate_synthetic(tmp / "synth", trainval=8, test=4, seed=0, show_progress=False)
    raw = json.loads(json.dumps(TINY))
    raw["data"]["data"] = str(root)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, load_config(path)


def compare_and_report(
    cfg: ExperimentConfig, samplers: list[str], seeds: list[int], out: Path
) -> pd.DataFrame:
    """What ``ohem compare`` does: train the grid, then render the finished runs."""
    outcome = compare(cfg, samplers, seeds, out, show_progress=False)
    assert outcome.failures == []
    results = load_runs(outcome.finished(cfg.train.iters))
    write_report(out, results, bootstrap=200)
    return results


@pytest.fixture(scope="module")
def first(setup: tuple[Path, ExperimentConfig], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished compare of the three samplers with seed 1."""
    out = tmp_path_factory.mktemp("first") / "cmp"
    compare_and_report(setup[1], SAMPLERS, [1], out)
    return out


def run_state(out: Path) -> dict[str, tuple[int, int, int]]:
    """Per run: checkpoint mtime, metrics.jsonl line count, evals.jsonl line count."""
    return {
        p.name: (
            (p / "checkpoint.pt").stat().st_mtime_ns,
            len((p / "metrics.jsonl").read_text().splitlines()),
            len((p / "evals.jsonl").read_text().splitlines()),
        )
        for p in sorted((out / "runs").iterdir())
    }


def test_compare_writes_every_file(first: Path) -> None:
    assert sorted(p.name for p in (first / "runs").iterdir()) == ["fixed-s1", "hnm-s1", "ohem-s1"]
    settings = yaml.safe_load((first / "compare.yaml").read_text())
    assert settings["samplers"] == SAMPLERS and settings["seeds"] == [1]
    results = pd.read_csv(first / "results.csv")
    assert set(RUN_COLUMNS) <= set(results.columns) and len(results) == 3
    assert list(results["iters"]) == [6, 6, 6]
    assert any(c.startswith("AP/") for c in results.columns)
    summary = pd.read_csv(first / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS and list(summary["sampler"]) == SAMPLERS
    pairs = pd.read_csv(first / "pairs.csv")
    assert pairs[["a", "b"]].values.tolist() == [
        ["ohem", "hnm"],
        ["ohem", "fixed"],
        ["hnm", "fixed"],
    ]
    # One seed, but the runs kept their matches: the interval is a bootstrap over test images.
    assert pairs["method"].str.startswith("bootstrap: 200 resamples").all()
    assert (pairs["ci_low"] <= pairs["delta"]).all() and (pairs["delta"] <= pairs["ci_high"]).all()
    assert pairs["verdict"].str.contains("1 seed: test set only").all()
    for name in PLOTS[:-1]:
        assert (first / "plots" / f"{name}.png").stat().st_size > 0
    report = (first / "report.md").read_text()
    # chosen_iou is drawn once training logs iou_hist, and skipped with a note before that.
    assert (first / "plots" / "chosen_iou.png").is_file() != (CHOSEN_IOU_SKIPPED in report)
    for text in (
        "## Pairs",
        "## Time to accuracy",
        "## Per-class AP",
        "plots/map_vs_time.png",
        "paired bootstrap",
        "```yaml",
        "- torch:",
    ):
        assert text in report
    for run in (first / "runs").iterdir():
        summary = json.loads((run / "summary.json").read_text())
        assert [p["iter"] for p in summary["eval_history"]] == [3, 6]
        # The saved matches reproduce the final mAP when every test image counts once.
        matches = run_matches(read_run(run))
        assert matches is not None and len(matches.image_ids) == 4
        assert weighted_map(matches, np.ones((1, 4)))[0] == pytest.approx(summary["mAP"], abs=1e-12)


def test_second_compare_trains_nothing(first: Path, setup: tuple[Path, ExperimentConfig]) -> None:
    before = run_state(first)
    results = compare_and_report(setup[1], SAMPLERS, [1], first)
    assert run_state(first) == before
    assert results["mAP"].tolist() == pd.read_csv(first / "results.csv")["mAP"].tolist()


def test_other_settings_are_refused(first: Path, setup: tuple[Path, ExperimentConfig]) -> None:
    cfg = setup[1]
    with pytest.raises(UserError, match="choose another --out"):
        compare(replace(cfg, train=replace(cfg.train, iters=7)), SAMPLERS, [1], first, False)
    with pytest.raises(UserError, match="choose another --out"):
        compare(cfg, ["fixed", "ohem"], [1], first, show_progress=False)


def test_interrupted_compare_resumes(
    first: Path, setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    """A run stopped after 4 of 6 iterations (checkpoint, no summary) is continued, not redone."""
    from ohemcli.engine.train import train

    cfg = setup[1]
    out = tmp_path / "cmp"
    partial = out / "runs" / "fixed-s1"
    train(replace(cfg, train=replace(cfg.train, iters=4)), partial, show_progress=False)
    (partial / "summary.json").unlink()  # as if killed after the checkpoint at iteration 4
    shutil.rmtree(partial / "eval")
    lines_before = len((partial / "metrics.jsonl").read_text().splitlines())
    results = compare_and_report(cfg, ["fixed"], [1], out)
    summary = json.loads((partial / "summary.json").read_text())
    assert summary["iters"] == 6
    assert len((partial / "metrics.jsonl").read_text().splitlines()) == lines_before + 1
    reference = json.loads((first / "runs" / "fixed-s1" / "summary.json").read_text())
    assert results["mAP"].tolist() == [reference["mAP"]]
    assert summary["AP"] == reference["AP"]


def test_cli_report_matches_compare(first: Path, setup: tuple[Path, ExperimentConfig]) -> None:
    before = run_state(first)
    args = ["--config", str(setup[0]), "--out", str(first), "--no-progress"]
    shown = runner.invoke(app, ["compare", *args])
    assert shown.exit_code == 0, shown.output
    assert run_state(first) == before
    report = runner.invoke(app, ["report", str(first), "--bootstrap", "1000"])
    assert report.exit_code == 0, report.output
    assert report.stdout.strip() and report.stdout == shown.stdout
    assert "ohem − hnm" in report.stdout and "reaches" in report.stdout
    csv = runner.invoke(app, ["report", str(first), "--format", "csv"])
    assert csv.stdout == (first / "summary.csv").read_text()
    as_json = json.loads(runner.invoke(app, ["report", str(first), "--format", "json"]).stdout)
    assert [r["sampler"] for r in as_json["samplers"]] == SAMPLERS
    assert len(as_json["pairs"]) == 3 and len(as_json["time_to_map"]) == 3
    compared = runner.invoke(app, ["compare", *args, "--json", "--bootstrap", "0"])
    assert compared.exit_code == 0, compared.output
    as_json = json.loads(compared.stdout)
    assert {p["method"] for p in as_json["pairs"]} == {"t over seeds"}
    refused = runner.invoke(app, ["compare", *args, "--iters", "7"])
    assert refused.exit_code == 2 and "choose another --out" in refused.output


def test_settings_can_change_until_a_run_starts(tmp_path: Path) -> None:
    cfg = ExperimentConfig()
    check_settings(tmp_path, cfg, ["fixed"], [1])
    check_settings(tmp_path, cfg, ["fixed", "ohem"], [1, 2])  # nothing trained yet: replaced
    assert yaml.safe_load((tmp_path / "compare.yaml").read_text())["seeds"] == [1, 2]
    (tmp_path / "runs" / "fixed-s1").mkdir(parents=True)
    (tmp_path / "runs" / "fixed-s1" / "checkpoint.pt").write_bytes(b"")
    check_settings(tmp_path, cfg, ["fixed", "ohem"], [1, 2])
    with pytest.raises(UserError, match="choose another --out"):
        check_settings(tmp_path, cfg, ["fixed"], [1, 2])
    with pytest.raises(UserError, match="--samplers: unknown bogus"):
        check_settings(tmp_path, cfg, ["fixed", "bogus"], [1])
    with pytest.raises(UserError, match="--seeds: give each seed once"):
        check_settings(tmp_path, cfg, ["fixed"], [1, 1])


def test_run_order_rotates_samplers_per_seed() -> None:
    assert run_order(["a", "b", "c"], [1, 2]) == [
        (1, "a"), (1, "b"), (1, "c"), (2, "b"), (2, "c"), (2, "a"),
    ]  # fmt: skip


def test_bad_seeds_are_a_one_line_error() -> None:
    result = runner.invoke(app, ["compare", "--seeds", "1,x", "--no-progress"])
    assert result.exit_code == 2 and "--seeds" in result.output


def test_a_crashed_run_lets_the_others_finish(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash (not a user error) in one run is recorded by name; the next run still trains."""
    from ohemcli.launch import compare as engine_compare

    real = engine_compare.train_run

    def crash_hnm(base, run, show_progress, callback=None):  # type: ignore[no-untyped-def]
        if run.sampler == "hnm":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(base, run, show_progress, callback)

    monkeypatch.setattr(engine_compare, "train_run", crash_hnm)
    outcome = compare(setup[1], ["hnm", "fixed"], [1], tmp_path / "cmp", show_progress=False)
    assert [f.name for f in outcome.failures] == ["hnm-s1"]
    assert outcome.failures[0].last_line == (
        "RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    assert [p.name for p in outcome.finished(setup[1].train.iters)] == ["fixed-s1"]
