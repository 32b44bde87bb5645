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
from ohemcli.report.analysis import analyse_results, to_json
from ohemcli.report.plots import CHOSEN_IOU_SKIPPED
from ohemcli.report.render import write_report
from ohemcli.report.settled import ADVICE, NOT_SETTLED
from ohemcli.report.tables import RUN_COLUMNS, SUMMARY_COLUMNS
from ohemcli.runs.paths import PLOT_NAMES
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
    from ohemcli.data.synthetic.generate import generate_synthetic

    tmp = tmp_path_factory.mktemp("cmp")
    root = generate_synthetic(tmp / "synth", trainval=8, test=4, seed=0, show_progress=False)
    raw = json.loads(json.dumps(TINY))
    raw["data"]["root"] = str(root)
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
    assert pairs["interval_verdict"].str.contains("1 seed: test set only").all()
    # Six iterations teach the model nothing: no pair of such runs gets a verdict.
    assert (pairs["verdict"] == NOT_SETTLED).all()
    assert set(results["run_state"]) <= {"unsettled", "collapsed"}
    for name in PLOT_NAMES[:-1]:
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
        assert [p["iter"] for p in map(json.loads, (run / "evals.jsonl").open())] == [3, 6]
        assert "eval_history" not in summary  # evals.jsonl is the one record of them
        assert summary["stability"]["evaluations"] == 2
        assert summary["stability"]["final_map"] == summary["mAP"]
        # The saved matches reproduce the final mAP when every test image counts once.
        matches = run_matches(read_run(run))
        assert matches is not None and len(matches.image_ids) == 4
        assert weighted_map(matches, np.ones((1, 4)))[0] == pytest.approx(summary["mAP"], abs=1e-12)


def test_second_compare_trains_nothing(first: Path, setup: tuple[Path, ExperimentConfig]) -> None:
    before = run_state(first)
    results = compare_and_report(setup[1], SAMPLERS, [1], first)
    assert run_state(first) == before
    assert results["mAP"].tolist() == pd.read_csv(first / "results.csv")["mAP"].tolist()


def test_another_config_is_refused_by_key(
    first: Path, setup: tuple[Path, ExperimentConfig]
) -> None:
    cfg = setup[1]
    before = run_state(first)
    with pytest.raises(UserError) as info:
        compare(replace(cfg, train=replace(cfg.train, iters=7)), SAMPLERS, [1], first, False)
    assert str(info.value) == (
        f"{first / 'compare.yaml'} has train.iters = 6, this command 7; a compare folder grows "
        "only by samplers and seeds: choose another --out"
    )
    # Fewer samplers than the folder holds: nothing to train, and the folder keeps all three.
    outcome = compare(cfg, ["fixed", "ohem"], [1], first, show_progress=False)
    assert [r.name for r in outcome.runs] == ["fixed-s1", "ohem-s1"] and not outcome.failures
    assert run_state(first) == before
    assert yaml.safe_load((first / "compare.yaml").read_text())["samplers"] == SAMPLERS


def test_a_compare_grows_by_a_sampler_and_trains_only_it(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ohemcli.launch import compare as launch_compare

    trained: list[str] = []
    real = launch_compare.train_run

    def record(base, run, show_progress, callback=None):  # type: ignore[no-untyped-def]
        trained.append(run.name)
        return real(base, run, show_progress, callback)

    monkeypatch.setattr(launch_compare, "train_run", record)
    cfg, out = setup[1], tmp_path / "cmp"
    compare_and_report(cfg, ["fixed"], [1], out)
    fixed = out / "runs" / "fixed-s1"
    files = [fixed / name for name in ("checkpoint.pt", "summary.json", "metrics.jsonl")]
    stamps = [p.stat().st_mtime_ns for p in files]
    results = compare_and_report(cfg, ["fixed", "ohem"], [1], out)
    assert trained == ["fixed-s1", "ohem-s1"]  # fixed-s1 once, in the first call
    assert [p.stat().st_mtime_ns for p in files] == stamps
    assert sorted(results["run"]) == ["fixed-s1", "ohem-s1"]
    settings = yaml.safe_load((out / "compare.yaml").read_text())
    assert (settings["samplers"], settings["seeds"]) == (["fixed", "ohem"], [1])
    assert pd.read_csv(out / "pairs.csv")[["a", "b"]].values.tolist() == [["ohem", "fixed"]]


def test_a_compare_of_unsettled_runs_warns_and_gives_no_verdict(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    """lr 0.2 on purpose: the report names each sampler's worst run and calls no pair."""
    cfg = setup[1]
    hot = replace(cfg, train=replace(cfg.train, lr=0.2))
    outcome = compare(hot, ["fixed", "ohem"], [1], tmp_path / "cmp", show_progress=False)
    assert outcome.failures == []
    a = analyse_results(load_runs(outcome.finished(cfg.train.iters)), bootstrap=0)
    assert [line.split(":")[0] for line in a.stability_warnings] == ["fixed", "ohem"]
    for line in a.stability_warnings:
        assert line.endswith("runs not settled. " + ADVICE)
    assert list(a.pairs["verdict"]) == [NOT_SETTLED]
    assert json.loads(to_json(a))["stability_warnings"] == a.stability_warnings


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


def test_a_folder_from_before_new_keys_grows_under_the_same_setting(tmp_path: Path) -> None:
    cfg = ExperimentConfig()
    check_settings(tmp_path, cfg, ["fixed"], [1])
    (tmp_path / "runs" / "fixed-s1").mkdir(parents=True)
    (tmp_path / "runs" / "fixed-s1" / "checkpoint.pt").write_bytes(b"")
    saved = yaml.safe_load((tmp_path / "compare.yaml").read_text())
    for section, key in (("model", "input_norm"), ("model", "pool_ceil"), ("eval", "protocol")):
        del saved["config"][section][key]  # written before these keys existed
    saved["config"]["model"]["pretrained"] = False  # and with the old boolean
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    check_settings(tmp_path, cfg, ["fixed", "ohem"], [1])  # the same setting: it grows
    assert yaml.safe_load((tmp_path / "compare.yaml").read_text())["samplers"] == ["fixed", "ohem"]
    other = replace(cfg, model=replace(cfg.model, pool_ceil=True))
    with pytest.raises(UserError, match=r"has model.pool_ceil = False, this command True"):
        check_settings(tmp_path, other, ["fixed"], [1])


def test_settings_can_change_until_a_run_starts(tmp_path: Path) -> None:
    cfg = ExperimentConfig()
    check_settings(tmp_path, cfg, ["fixed"], [1])
    check_settings(tmp_path, cfg, ["fixed", "ohem"], [1, 2])  # nothing trained yet: replaced
    assert yaml.safe_load((tmp_path / "compare.yaml").read_text())["seeds"] == [1, 2]
    (tmp_path / "runs" / "fixed-s1").mkdir(parents=True)
    (tmp_path / "runs" / "fixed-s1" / "checkpoint.pt").write_bytes(b"")
    check_settings(tmp_path, cfg, ["fixed", "ohem"], [1, 2])
    # Once a run has started the folder only grows: the union of samplers and of seeds.
    check_settings(tmp_path, cfg, ["hnm"], [3, 1])
    saved = yaml.safe_load((tmp_path / "compare.yaml").read_text())
    assert (saved["samplers"], saved["seeds"]) == (["fixed", "ohem", "hnm"], [1, 2, 3])
    other = replace(cfg, data=replace(cfg.data, scale=cfg.data.scale + 1))
    with pytest.raises(UserError, match=rf"has data.scale = {cfg.data.scale}, this command"):
        check_settings(tmp_path, other, ["fixed"], [1])
    (tmp_path / "compare.yaml").write_text("[1, 2]")
    with pytest.raises(UserError, match="compare.yaml: not a compare settings file"):
        check_settings(tmp_path, cfg, ["fixed"], [1])
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


def test_ohem_compare_of_a_new_sampler_reports_the_whole_folder(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    config, out = setup[0], tmp_path / "cmp"
    for sampler in ("fixed", "ohem"):
        args = ["compare", "--config", str(config), "--samplers", sampler, "--seeds", "1"]
        done = runner.invoke(app, [*args, "--out", str(out), "--bootstrap", "0"])
        assert done.exit_code == 0, done.output
    # The second command trained ohem alone; its report covers fixed-s1 too.
    assert sorted(pd.read_csv(out / "results.csv")["run"]) == ["fixed-s1", "ohem-s1"]
    assert pd.read_csv(out / "pairs.csv")[["a", "b"]].values.tolist() == [["ohem", "fixed"]]


def test_with_jobs_1_a_run_that_fails_lets_the_others_finish_and_is_named(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    """In process (--jobs 1) as in jobs: a corrupt checkpoint and a run folder that cannot be
    written fail their own runs only; the other run trains, one table names both, exit 1."""
    out = tmp_path / "cmp"
    corrupt = out / "runs" / "hnm-s1"
    corrupt.mkdir(parents=True)
    (corrupt / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (out / "runs" / "ohem-s1").write_text("a file where the run folder goes")
    args = ["compare", "--config", str(setup[0]), "--samplers", "hnm,fixed,ohem", "--seeds", "1"]
    done = runner.invoke(app, [*args, "--out", str(out), "--jobs", "1", "--bootstrap", "0"])
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    assert (out / "runs" / "fixed-s1" / "summary.json").is_file()
    table = done.stderr[done.stderr.index("Runs that did not finish") :]
    # the broken run folder (a checkpoint without its config.yaml) is named by its failing file;
    # the table wraps long cells, so look for the file name with the cell borders taken out
    flat = "".join(ch for ch in table if not ch.isspace() and ch != "│")
    assert "hnm-s1" in table and ("checkpoint.pt" in flat or "config.yaml" in flat)
    assert "ohem-s1" in table and "not a folder" in table
    assert pd.read_csv(out / "results.csv")["run"].tolist() == ["fixed-s1"]


def test_a_second_compare_on_a_folder_being_submitted_is_refused(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    """While one compare holds the folder (deciding and submitting), another says so and
    writes nothing; once it lets go, the folder is free."""
    import subprocess
    import sys

    from ohemcli.runs.paths import ComparePaths

    folder = ComparePaths(tmp_path / "cmp")
    folder.root.mkdir()
    hold = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); "
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(folder.lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"another ohem compare \(pid {holder.pid}, running\)"):
            compare(setup[1], ["fixed"], [1], folder.root, show_progress=False)
        assert not folder.settings.exists()
    finally:
        holder.communicate("")  # closing stdin ends it
    assert check_settings(folder.root, setup[1], ["fixed"], [1]) is None


def test_a_finished_run_of_another_sampler_in_the_folder_is_refused_not_reused(
    first: Path, setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    """A run is identified by what it is, not by its folder's name: hnm's finished run in the
    folder fixed-s1 is refused by name instead of being reported as fixed."""
    out = tmp_path / "cmp"
    shutil.copytree(first / "runs" / "hnm-s1", out / "runs" / "fixed-s1")
    shutil.copy(first / "compare.yaml", out / "compare.yaml")
    with pytest.raises(UserError) as info:
        compare(setup[1], ["fixed"], [1], out, show_progress=False)
    assert str(info.value) == (
        f"{out / 'runs' / 'fixed-s1'}: holds a finished run of sampler 'hnm', not 'fixed'; "
        "move it away or choose another --out"
    )


def test_growing_a_compare_over_changed_annotations_is_refused_naming_what_changed(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path
) -> None:
    """compare.yaml records the data's fingerprint; a box edited in place between two calls is
    refused before the new sampler trains, and the message says which split's annotations."""
    cfg = setup[1]
    root = Path(shutil.copytree(cfg.data.root, tmp_path / "data"))
    cfg = replace(cfg, data=replace(cfg.data, root=str(root)))
    out = tmp_path / "cmp"
    assert compare(cfg, ["fixed"], [1], out, show_progress=False).failures == []
    saved = yaml.safe_load((out / "compare.yaml").read_text())["data_fingerprint"]
    assert set(saved) == {"train", "test"} and set(saved["test"]) == {"images", "annotations"}
    test_id = (root / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    xml = root / "Annotations" / f"{test_id}.xml"
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    end = text.index("</xmax>")
    xml.write_text(text[:start] + str(int(text[start:end]) - 3) + text[end:])
    with pytest.raises(UserError) as info:
        compare(cfg, ["fixed", "ohem"], [1], out, show_progress=False)
    assert str(info.value) == (
        f"{out / 'compare.yaml'}: the annotations of the test split changed since the folder's "
        "runs trained; a compare folder grows only over the same data: choose another --out"
    )
    assert not (out / "runs" / "ohem-s1").exists()


def test_a_run_folder_deleted_during_the_compare_is_named_not_dropped(
    setup: tuple[Path, ExperimentConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hnm's folder vanishes once it has trained: the compare exits 1 naming it, on stderr and
    in report.md, and reports the run that is left."""
    from ohemcli.launch import compare as launch_compare

    real = launch_compare.train_run

    def train_then_delete(base, run, show_progress, callback=None):  # type: ignore[no-untyped-def]
        summary = real(base, run, show_progress, callback)
        if run.sampler == "hnm":
            shutil.rmtree(run.path)
        return summary

    monkeypatch.setattr(launch_compare, "train_run", train_then_delete)
    out = tmp_path / "cmp"
    args = ["compare", "--config", str(setup[0]), "--samplers", "hnm,fixed", "--seeds", "1"]
    done = runner.invoke(app, [*args, "--out", str(out), "--bootstrap", "0", "--no-progress"])
    assert done.exit_code == 1, done.output
    assert "hnm-s1" in done.stderr and "missing" in done.stderr
    report = (out / "report.md").read_text()
    assert "- hnm-s1 (missing): its run folder is gone" in report
    assert pd.read_csv(out / "results.csv")["run"].tolist() == ["fixed-s1"]
