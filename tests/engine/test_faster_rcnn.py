"""faster-rcnn end to end: no selective search, the samplers and a plugin unchanged, hnm's pool of
boxes, COCO data, ``ohem eval`` on a finished run, a compare that names the detector, and the
VOC07 preset for two iterations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ohemcli.config import load_config
from ohemcli.engine.train import train
from tests.data.coco_sets import coco_doc, coco_layout
from tests.helpers import tiny_voc_root

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "plugins"
# Small RPN counts: the test images are 64 to 160 px
RPN = {
    "model.detector": "faster-rcnn",
    "model.rpn_pre_nms_train": 400,
    "model.rpn_post_nms_train": 100,
    "model.rpn_pre_nms_test": 300,
    "model.rpn_post_nms_test": 50,
}


@pytest.fixture()
def faster(small_config):
    def make(**overrides):
        return small_config(**{**RPN, "train.iters": 6, "train.lr_steps": [5], **overrides})

    return make


def _count_searches(monkeypatch: pytest.MonkeyPatch, cache: Path) -> list[str]:
    """Every image that selective search runs on, in this process; an empty cache of its own,
    so that no earlier test's boxes stand in for a search."""
    import ohemcli.data.proposals.load as load

    monkeypatch.setenv("OHEM_CACHE", str(cache))
    calls: list[str] = []
    real = load.compute_selective_search

    def counted(paths, max_boxes, workers=None, show_progress=True, max_side=0):
        calls.extend(map(str, paths))
        return real(paths, max_boxes, 1, show_progress, max_side)

    monkeypatch.setattr(load, "compute_selective_search", counted)
    return calls


@pytest.mark.parametrize("detector, searched", [("faster-rcnn", False), ("fast-rcnn", True)])
def test_a_new_voc_root_trains_under_faster_rcnn_without_one_selective_search(
    tmp_path, monkeypatch, detector, searched
):
    calls = _count_searches(monkeypatch, tmp_path / "cache")
    root = tiny_voc_root(tmp_path, 3)
    cfg = load_config(
        None,
        {
            **RPN,
            "model.detector": detector,
            "data.root": str(root),
            "data.scale": 64,
            "data.max_size": 64,
            "data.test_split": "trainval",
            "data.workers": 0,
            "model.backbone": "tiny",
            "sampler.batch_rois": 16,
            "train.iters": 1,
            "train.lr_steps": [],
            "train.eval_points": 0,
        },
    )
    summary = train(cfg, tmp_path / "run", show_progress=False)
    # the control (fast-rcnn) proves that the counter sees the searches the data needs
    assert (len(calls) > 0) == searched, calls
    assert summary["detector"] == detector
    assert summary["proposal_source"] == (
        "rpn" if detector == "faster-rcnn" else "selective_search"
    )
    assert set(summary["proposal_recall"]) >= {"300@0.5", "1000@0.7"}


@pytest.mark.parametrize("sampler", ["fixed", "ohem", "ohem-mmdet", "libra", "pisa", "focal"])
def test_every_sampler_trains_on_the_rpns_proposals(tmp_path, faster, sampler):
    summary = train(faster(**{"sampler.name": sampler}), tmp_path / sampler, show_progress=False)
    lines = [
        json.loads(x) for x in (tmp_path / sampler / "metrics.jsonl").read_text().split("\n") if x
    ]
    assert all(x["loss_rpn_cls"] > 0 and x["candidates_per_image"] > 0 for x in lines)
    # the recall pass proposes up to 1,000 per image, beyond the 50 that detection scores
    assert summary["iters"] == 6 and 50 < summary["proposal_recall"]["mean_proposals"] <= 1000


def test_the_example_plugin_runs_under_faster_rcnn_unchanged(tmp_path, faster, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    name = "hard_after_warmup:HardAfterWarmup"
    cfg = faster(**{"sampler.name": name})
    summary = train(cfg, tmp_path / "plugin", show_progress=False)
    assert summary["sampler"] == name and summary["detector"] == "faster-rcnn"
    state = torch.load(tmp_path / "plugin" / "checkpoint.pt", weights_only=True)["sampler"]
    assert state == {"seen": 12}  # 6 iterations of 2 images: the plugin chose on every one


def test_hnm_mines_the_rpns_proposals_into_a_pool_of_boxes_that_training_uses(tmp_path, faster):
    cfg = faster(
        **{
            "sampler.name": "hnm",
            "sampler.mine_every": 2,
            "sampler.hnm_fp_thresh": 0.0,  # every negative scores as an object: a full pool
            "sampler.hnm_pool_per_image": 5,
        }
    )
    summary = train(cfg, tmp_path / "hnm", show_progress=False)
    assert summary["mining_passes"] == 2  # after iterations 2 and 4 (not after the last)
    state = torch.load(tmp_path / "hnm" / "checkpoint.pt", weights_only=True)["sampler"]
    assert state["pool"] == {} and len(state["box_pool"]) == 12  # every training image
    for entry in state["box_pool"].values():
        assert entry["boxes"].shape == (5, 4) and (entry["score"][:-1] >= entry["score"][1:]).all()


def test_coco_data_trains_and_scores_under_faster_rcnn(tmp_path):
    doc = coco_doc(3, boxes={i: [(5, [8.0, 8.0, 16.0, 16.0])] for i in (1, 2, 3)})
    root = coco_layout(tmp_path / "c", {"train": doc, "test": coco_doc(2)})
    cfg = load_config(
        None,
        {
            **RPN,
            "data.root": str(root),
            "data.train_split": "train",
            "data.scale": 40,
            "data.max_size": 48,
            "data.workers": 0,
            "model.backbone": "tiny",
            "sampler.batch_rois": 8,
            "train.iters": 2,
            "train.lr_steps": [],
            "train.eval_points": 0,
            "eval.metric": "all",
        },
    )
    summary = train(cfg, tmp_path / "run", show_progress=False)
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["metrics"]["coco"]["coco"]["AP"] is not None
    assert summary["proposal_recall"]["300@0.5"] >= 0.0 and metrics["proposal_source"] == "rpn"


def test_ohem_eval_of_a_finished_run_proposes_with_its_rpn(tmp_path, faster):
    from ohemcli.evaluation.evaluate import evaluate_run

    run = tmp_path / "run"
    summary = train(faster(), run, show_progress=False)
    again = evaluate_run(run, split="test", show_progress=False)
    # the same weights, proposals and protocol: the same numbers
    assert again["mAP"] == summary["mAP"]
    assert again["proposal_recall"] == summary["proposal_recall"]


def test_a_compare_under_faster_rcnn_names_the_detector_and_the_recall(tmp_path, faster):
    from ohemcli.launch.compare import compare
    from ohemcli.report import load_runs
    from ohemcli.report.render import write_report

    cfg = faster()
    outcome = compare(cfg, ["fixed", "ohem"], [1], tmp_path / "cmp", show_progress=False)
    runs = outcome.finished(cfg.train.iters)
    assert len(runs) == 2
    stamps = [(r / "summary.json").stat().st_mtime_ns for r in runs]
    # the same compare again reuses the finished runs (the RPN's derived anchors included)
    again = compare(cfg, ["fixed", "ohem"], [1], tmp_path / "cmp", show_progress=False)
    assert not again.failures
    assert [(r / "summary.json").stat().st_mtime_ns for r in runs] == stamps
    write_report(tmp_path / "cmp", load_runs(list(runs)), plots=False, bootstrap=0)
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "faster-rcnn (RPN proposals)" in report and "recall@300" in report
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "faster-rcnn (RPN proposals)" in page and "recall@300" in page


def test_the_faster_vgg16_preset_trains_two_iterations_on_the_synthetic_set(tmp_path):
    from ohemcli.api import load
    from ohemcli.engine.train import Trainer

    cfg = load(
        "faster_vgg16",
        {
            "data.root": "synth",
            "data.workers": 0,
            "model.pretrained": "none",  # the Caffe weights cannot be downloaded here
            "train.iters": 2,
            "train.device": "cpu",
        },
    )
    assert (cfg.data.scale, cfg.train.lr, cfg.train.lr_steps) == (600, 0.001, (50000,))
    trainer = Trainer(cfg, tmp_path / "run", resume=False, show_progress=False)
    trainer.model.train()
    steps = [trainer.step(batch) for batch in trainer.batches()]
    assert len(steps) == 2 and all(torch.isfinite(torch.tensor(s.loss)) for s in steps)
    assert steps[0].loss_rpn_cls is not None and steps[0].num_chosen == 256
    assert trainer.model.rpn is not None
    sizes = trainer.model.rpn.rpn.anchor_generator.sizes
    assert sizes == ((128, 256, 512),)  # py-faster-rcnn's at 600 px
