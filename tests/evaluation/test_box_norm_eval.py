"""A run trained with model.box_norm: data decodes the same after a checkpoint round trip, and
its metrics name the test protocol."""

from __future__ import annotations

import json

import pytest
import torch

from ohemcli.boxes import BoxNorm
from ohemcli.engine.train import train
from ohemcli.evaluation.evaluate import evaluate_run, load_run_model
from ohemcli.runs.checkpointer import load_checkpoint


@pytest.fixture(scope="module")
def data_norm_run(tmp_path_factory, small_synth):
    from ohemcli.config import load_config

    cfg = load_config(
        None,
        {
            "data.root": str(small_synth),
            "data.scale": 160,
            "data.max_size": 220,
            "data.max_proposals": 100,
            "data.workers": 0,
            "model.backbone": "tiny",
            "model.box_norm": "data",
            "sampler.batch_rois": 32,
            "train.iters": 4,
            "train.lr": 0.01,
            "train.checkpoint_every": 10,
        },
    )
    run = tmp_path_factory.mktemp("runs") / "data-norm"
    return run, train(cfg, run, show_progress=False)


def test_checkpoint_carries_the_statistics_and_decodes_identically(data_norm_run) -> None:
    run, summary = data_norm_run
    state = load_checkpoint(run / "checkpoint.pt")["model"]
    fixed = BoxNorm.fixed(len(state["box_stds"]) - 1)
    assert not torch.equal(state["box_stds"], fixed.stds)  # fitted to the data, not the default
    model, _, _ = load_run_model(run, torch.device("cpu"))
    assert torch.equal(model.box_stds, state["box_stds"])
    assert torch.equal(model.box_means, state["box_means"])
    before = {p.name: p.read_text() for p in sorted((run / "eval").glob("comp4_det_*.txt"))}
    again = evaluate_run(run, "test", "voc07", device="cpu", show_progress=False)
    beside = run / "eval-test-default-voc07"
    after = {p.name: p.read_text() for p in sorted(beside.glob("comp4_det_*.txt"))}
    assert before and before == after  # the same detections, digit for digit
    assert again["mAP"] == pytest.approx(summary["mAP"], abs=1e-12)


def test_metrics_and_summary_name_the_protocol(data_norm_run) -> None:
    run, summary = data_norm_run
    default = {"name": "default", "max_dets": 100, "score_thresh": 0.05, "nms": 0.3}
    assert summary["eval_protocol"] == default
    assert json.loads((run / "summary.json").read_text())["eval_protocol"] == default
    result = evaluate_run(run, "test", "voc07", "cpu", False, max_dets=1, score_thresh=0.0)
    written = json.loads((run / "eval-test-custom-max1-score0-voc07" / "metrics.json").read_text())
    custom = {"name": "custom", "max_dets": 1, "score_thresh": 0.0, "nms": 0.3}
    assert written["eval_protocol"] == custom
    assert sum(result["num_det"].values()) <= result["num_images"]  # at most one per image
    result = evaluate_run(run, "test", "voc07", "cpu", False, protocol="fast-rcnn")
    written = json.loads((run / "eval-test-fast-rcnn-voc07" / "metrics.json").read_text())
    assert written["eval_protocol"]["name"] == "fast-rcnn"
    # the final thresholds leave fewer than 40 per class per image over the set (strictly above)
    assert all(n < 40 * result["num_images"] for n in result["num_det"].values())
    assert sum(result["num_det"].values()) > result["num_images"]  # no 0.05 floor, no cap of 1


def test_eval_under_another_protocol_leaves_the_run_and_its_report_alone(data_norm_run) -> None:
    """``ohem eval RUN --test-protocol ohem-release`` (and another split or limit) writes beside
    the run's own evaluation; ``ohem report`` then keeps the run, with the same figures."""
    from typer.testing import CliRunner

    from ohemcli.cli import app

    run, summary = data_norm_run
    own = {p.name: p.read_bytes() for p in sorted((run / "eval").iterdir())}
    report = ["report", str(run), "--format", "json", "--bootstrap", "0", "--no-plots"]
    first = CliRunner().invoke(app, report)
    assert first.exit_code == 0, first.output
    for args in (["--test-protocol", "ohem-release"], ["--max-dets", "3"], ["--split", "trainval"]):
        done = CliRunner().invoke(app, ["eval", str(run), "--json", *args])
        assert done.exit_code == 0, done.output
    assert {p.name: p.read_bytes() for p in sorted((run / "eval").iterdir())} == own
    assert (run / "eval-test-ohem-release-voc07" / "matches.npz").is_file()
    assert (run / "eval-test-custom-max3-score0.05-voc07" / "metrics.json").is_file()
    assert (run / "eval-trainval-default-voc07" / "metrics.json").is_file()
    again = CliRunner().invoke(app, report)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert first.stdout.count(run.name) >= 1  # the run is in the report, not left out
