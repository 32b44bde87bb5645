"""``read_run``: one parse of a run folder for every reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ohemcli.errors import UserError
from ohemcli.evaluation.matches import run_matches
from ohemcli.runs.paths import RunPaths
from ohemcli.runs.records import read_run


def write_run(root: Path, with_evals: bool = True) -> RunPaths:
    paths = RunPaths(root)
    root.mkdir(parents=True)
    history = [
        {"iter": 4, "mAP": 0.2, "wall_seconds": 4.0},
        {"iter": 8, "mAP": 0.3, "wall_seconds": 8.0},
    ]
    summary = {"sampler": "ohem", "seed": 3, "mAP": 0.3}
    paths.summary.write_text(json.dumps(summary))
    paths.config.write_text(yaml.safe_dump({"sampler": {"name": "ohem"}, "train": {"seed": 3}}))
    if with_evals:  # a resumed run repeats iteration 8: the last line wins
        lines = [*history, {"iter": 8, "mAP": 0.31, "wall_seconds": 8.5}]
        paths.evals.write_text("".join(json.dumps(x) + "\n" for x in lines))
    paths.metrics.write_text(json.dumps({"iter": 2, "loss": 1.0}) + "\n\n")
    return paths


def test_read_run_parses_every_file(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "r").root)
    assert (run.name, run.sampler, run.seed) == ("r", "ohem", 3)
    assert run.evals["iter"].tolist() == [4, 8] and run.evals["mAP"].tolist() == [0.2, 0.31]
    assert run.metrics["loss"].tolist() == [1.0]
    assert run.eval_metrics is None and run_matches(run) is None and run.eval_protocol is None
    assert run.config["sampler"]["name"] == "ohem" and len(run.setting) == 8


def test_a_run_without_evals_jsonl_has_no_eval_history(tmp_path: Path) -> None:
    paths = write_run(tmp_path / "r", with_evals=False)
    protocol = {"max_dets": 100, "score_thresh": 0.05, "nms": 0.3}
    paths.eval_dir.mkdir()
    paths.eval_metrics.write_text(json.dumps({"mAP": 0.3, "eval_protocol": protocol}))
    run = read_run(paths.root)
    assert run.evals.empty  # the summary's copy of the history is not read
    assert run.eval_protocol == protocol


def test_a_summary_that_is_not_an_object_is_one_line(tmp_path: Path) -> None:
    paths = write_run(tmp_path / "r")
    paths.summary.write_text("[1, 2]")
    with pytest.raises(UserError, match=r"summary.json: expected a JSON object, found list"):
        read_run(paths.root)


def test_broken_run_folders_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a finished run folder"):
        read_run(tmp_path)
    paths = write_run(tmp_path / "r")
    paths.evals.write_text('{"iter": 1}\n{"iter": 2,\n')
    with pytest.raises(UserError, match=r"evals.jsonl:2: not a JSON line"):
        read_run(paths.root)
    paths.summary.write_text("{")
    with pytest.raises(UserError, match="summary.json: not valid JSON"):
        read_run(paths.root)
