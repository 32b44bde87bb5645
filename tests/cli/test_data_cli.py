"""``ohem data ...`` through typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.data.voc import VOCDataset
from tests.conftest import shared_root

runner = CliRunner()
COMMANDS = ["stats", "synth", "proposals", "download", "convert"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_data_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, ["data", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
    assert f"ohem data {command}" in result.stdout


def test_data_group_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_stats_json_is_one_object_with_the_exact_keys() -> None:
    root = shared_root("voc100")
    result = runner.invoke(
        app, ["data", "stats", "--data", str(root), "--split", "trainval", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.endswith("}\n")
    stats = json.loads(result.stdout)
    assert list(stats) == ["images", "objects", "difficult", "classes", "dropped"]
    assert (stats["images"], stats["objects"], stats["difficult"], stats["dropped"]) == (
        100,
        273,
        38,
        0,
    )
    assert stats["classes"]["person"] == 91 and sum(stats["classes"].values()) == 273


def test_stats_json_counts_degenerate_boxes_apart() -> None:
    root = shared_root("bccd")
    result = runner.invoke(
        app, ["data", "stats", "--data", str(root), "--split", "trainval", "--json"]
    )
    assert result.exit_code == 0
    stats = json.loads(result.stdout)
    assert stats["objects"] == 3943 and stats["dropped"] == 2
    assert stats["classes"] == {"Platelets": 292, "RBC": 3348, "WBC": 301}  # 3941 kept


def test_stats_table_and_class_filter() -> None:
    root = shared_root("bccd")
    args = ["data", "stats", "--data", str(root), "--split", "test", "--classes", "WBC"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "WBC" in result.stdout and "RBC" not in result.stdout.split("annotated objects")[0]
    bad = runner.invoke(app, [*args[:-1], " , "])
    assert bad.exit_code == 2 and "--classes" in bad.stderr


def test_synth_and_proposals_from_mat(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = runner.invoke(
        app, ["data", "synth", "--out", str(out), "--trainval", "3", "--test", "2"]
    )
    assert result.exit_code == 0, result.output
    test = VOCDataset(out, "test")
    assert len(test) == 2
    # One whole-image box per image, as a Fast R-CNN file: y1 x1 y2 x2, 1-based.
    cells = np.empty((1, 2), dtype=object)
    for i in range(2):
        cells[0, i] = np.array([[1.0, 1.0, 240.0, 320.0]])
    scipy.io.savemat(str(tmp_path / "voc_2007_test.mat"), {"boxes": cells})
    args = ["data", "proposals", "--data", str(out), "--split", "test"]
    result = runner.invoke(app, [*args, "--from-mat", str(tmp_path / "voc_2007_test.mat")])
    assert result.exit_code == 0, result.output
    assert "boxes per image: 1.0" in result.stdout
    assert "recall@0.5:" in result.stdout and "recall@0.7:" in result.stdout


def test_synth_refuses_a_full_folder(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("mine")
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert str(tmp_path) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_download_accepts_only_known_sets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "download", "voc2012", "--root", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert not (tmp_path / "r").exists()


def test_stats_reports_selective_search_recall_as_evaluations_record_it(small_synth) -> None:
    from ohemcli.data.proposals import load_proposals, proposal_recall
    from ohemcli.data.splits import open_dataset

    result = runner.invoke(
        app,
        ["data", "stats", "--data", str(small_synth), "--split", "test", "--proposals",
         "--max-boxes", "60", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recall = json.loads(result.stdout)["proposal_recall"]
    assert recall["source"] == "selective_search" and recall["mean_proposals"] <= 60
    for iou in ("0.5", "0.7"):
        assert recall[f"100@{iou}"] <= recall[f"300@{iou}"] <= recall[f"1000@{iou}"] <= 1.0
        assert recall["1000@0.7"] <= recall["1000@0.5"]
    # every box counts at 1,000 (at most 60 per image): the older whole-list recall, computed
    # apart, gives the same share
    dataset = open_dataset(str(small_synth), "test")
    boxes = load_proposals(dataset, max_boxes=60, workers=1, show_progress=False)
    assert recall["1000@0.5"] == pytest.approx(proposal_recall(dataset, boxes, 0.5))
    assert recall["1000@0.7"] == pytest.approx(proposal_recall(dataset, boxes, 0.7))
