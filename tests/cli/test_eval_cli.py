"""``ohem eval``: JSON on stdout, the table, one-line errors with exit code 2, and the RUN mode."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.data.voc import VOCDataset
from ohemcli.evaluation.metrics import evaluate_all
from ohemcli.evaluation.results_files import ClassDetections, Detections, write_results_files
from tests.conftest import shared_root

runner = CliRunner()


@pytest.fixture(scope="module")
def voc100() -> VOCDataset:
    return VOCDataset(shared_root("voc100"), "test")


def _noisy_detections(ds: VOCDataset) -> Detections:
    """Each GT box shifted by a few pixels with a random score, plus a random false positive
    per image, so that AP is neither 0 nor 1 and ranking matters."""
    rng = np.random.default_rng(0)
    out: Detections = {}
    for k, name in enumerate(ds.classes):
        ids, scores, boxes = [], [], []
        for r in ds.records:
            for box in r.boxes[r.labels == k + 1]:
                ids.append(r.image_id)
                scores.append(rng.random())
                x1, y1, x2, y2 = box + rng.integers(-20, 21, size=4)
                boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
            ids.append(r.image_id)
            scores.append(rng.random() * 0.5)
            x, y = rng.integers(0, 300, size=2)
            boxes.append([x, y, x + 40, y + 40])
        out[name] = ClassDetections(ids, scores, np.maximum(np.array(boxes, float), 0))
    return out


def test_json_prints_exactly_one_object_matching_the_library(voc100, tmp_path):
    dets = _noisy_detections(voc100)
    write_results_files(dets, tmp_path, "test")
    args = ["eval", "--detections", str(tmp_path), "--data", str(voc100.root)]
    result = runner.invoke(app, [*args, "--split", "test", "--metric", "voc07", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1  # one line: one JSON object
    payload = json.loads(result.stdout)
    assert {"metric", "mAP", "AP", "num_images"} <= payload.keys()
    assert payload["metric"] == "voc07" and payload["num_images"] == 100
    assert set(payload["AP"]) == set(voc100.classes)
    # The files round-trip exactly, so the CLI agrees with the in-memory evaluation.
    expected = evaluate_all(dets, voc100.records, voc100.classes, "voc07")
    assert payload["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert 0.05 < payload["mAP"] < 0.95


def test_metric_all_json_and_table(voc100, tmp_path):
    write_results_files(_noisy_detections(voc100), tmp_path, "test")
    args = ["eval", "--detections", str(tmp_path), "--data", str(voc100.root), "--metric", "all"]
    payload = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert set(payload["metrics"]) == {"voc07", "voc10", "coco"}
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "AP voc10" in table.stdout and "person" in table.stdout and "mAP" in table.stdout
    assert f"{payload['mAP']:.4f}" in table.stdout


def test_malformed_file_is_one_error_line_with_exit_2(voc100, tmp_path):
    bad = tmp_path / "comp4_det_test_cat.txt"
    bad.write_text("2007_000027 0.9 1 2 3\n")
    args = ["eval", "--detections", str(tmp_path), "--data", str(voc100.root), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:1" in lines[0]


@pytest.mark.parametrize(
    "args, option",
    [
        ([], "--detections"),
        (["--detections", "x"], "--data"),
        (["runs/x", "--data", "y"], "not both"),
        (["runs/x", "--classes", "a,b"], "--classes"),
        (["--detections", "x", "--data", "y", "--max-dets", "5"], "--max-dets"),
        (["--detections", "x", "--data", "y", "--score-thresh", "0.1"], "--score-thresh"),
    ],
)
def test_missing_or_conflicting_options_name_the_option(args, option):
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 2
    assert option in result.stderr


def test_run_mode_calls_evaluate_run(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("ohemcli.evaluation.evaluate")

    def evaluate_run(
        run_dir: Path, split: str, metric: str, max_dets, score_thresh, protocol=None
    ) -> dict:
        calls.append((run_dir, split, metric, max_dets, score_thresh, protocol))
        if protocol == "fast-rcnn":
            protocol = {"name": protocol, "per_class_per_image": 40, "nms": 0.3}
        else:
            protocol = {"name": "custom" if max_dets else "default", "max_dets": max_dets or 100,
                        "score_thresh": score_thresh or 0.05, "nms": 0.3}  # fmt: skip
        return {"metric": metric, "mAP": 0.5, "AP": {"cat": 0.5}, "num_images": 3,
                "num_gt": {"cat": 2}, "num_det": {"cat": 4}, "eval_protocol": protocol}  # fmt: skip

    fake.evaluate_run = evaluate_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ohemcli.evaluation.evaluate", fake)
    result = runner.invoke(app, ["eval", str(tmp_path), "--split", "val", "--metric", "voc10"])
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path, "val", "voc10", None, None, None)]
    assert "0.5000" in result.stdout and "cat" in result.stdout
    flat = " ".join(result.stdout.split())  # the caption wraps at the table's width
    assert "protocol default: at most 100 detections per image, score > 0.05" in flat
    args = ["eval", str(tmp_path), "--max-dets", "2000", "--score-thresh", "0.00001"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls[-1] == (tmp_path, "test", "voc07", 2000, 0.00001, None)
    assert "at most 2000 detections per image, score > 1e-05" in " ".join(result.stdout.split())
    result = runner.invoke(app, ["eval", str(tmp_path), "--test-protocol", "fast-rcnn"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == (tmp_path, "test", "voc07", None, None, "fast-rcnn")
    flat = " ".join(result.stdout.split())
    assert "protocol fast-rcnn: per-class thresholds keeping about 40 per class" in flat
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "run folder not found" in missing.stderr


def test_eval_help_shows_an_example():
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "--detections" in result.stdout and "ohem eval --detections" in result.stdout
