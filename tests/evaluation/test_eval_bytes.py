"""The sped-up detection loop writes byte-identical evaluation files to the earlier one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ohemcli.data.proposals.load import clean_boxes
from ohemcli.data.splits import SplitData, open_split
from ohemcli.evaluation import evaluate as E
from ohemcli.model.fast_rcnn import build_model
from tests.helpers import small_synth_settings
from tests.reference_eval import reference_evaluate_model


@pytest.fixture(scope="module")
def tiny_eval(small_synth: Path, tmp_path_factory: pytest.TempPathFactory):
    """An untrained tiny model (its near-uniform scores give many detections of every class, with
    near ties) and the small synthetic test split with its proposals."""
    from ohemcli.config import load_config

    cfg = load_config(
        None,
        {**small_synth_settings(small_synth), "model.pretrained": "none"},
    )
    # Random boxes instead of selective search: the loops under test take proposals as given.
    dataset = open_split(cfg, "test")
    rng = np.random.default_rng(0)
    proposals = {}
    for r in dataset.records:
        xy = rng.uniform(0, [r.width - 20, r.height - 20], (150, 2))
        wh = rng.uniform(8, [r.width / 2, r.height / 2], (150, 2))
        proposals[r.image_id] = clean_boxes(np.hstack([xy, xy + wh]), r.width, r.height, 150)
    split = SplitData(dataset, proposals)
    model = build_model(cfg, split.dataset.num_classes, torch.device("cpu"))
    with torch.no_grad():  # spread the scores and move the boxes: thresholds and clipping bite
        model.cls_score.weight.normal_(std=0.1)
        model.bbox_pred.weight.normal_(std=0.05)
    return cfg, split, model


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    "protocol, limits",
    [
        ("default", {}),  # 100 per image over 0.05
        ("ohem-release", {"max_dets": 2000, "score_thresh": 0.00001}),
        ("fast-rcnn", {}),  # per-class thresholds over the set
        ("custom", {"max_dets": 3, "score_thresh": 0.2}),  # some classes empty in some images
        ("custom", {"max_dets": 100, "score_thresh": 0.99}),  # no detection at all
    ],
)
def test_evaluation_files_are_byte_identical_to_the_earlier_loop(
    tiny_eval, tmp_path, protocol, limits
):
    from dataclasses import replace

    cfg, split, model = tiny_eval
    cfg = replace(cfg, eval=replace(cfg.eval, protocol=protocol, **limits))
    now = E.evaluate_model(model, cfg, split, torch.device("cpu"), tmp_path / "new", None, False)
    then = reference_evaluate_model(
        model, cfg, split, torch.device("cpu"), tmp_path / "old", None, False
    )
    # The proposals' recall is new (evaluation.proposal_recall, tested on its own): the rest is
    # the earlier loop's, byte for byte.
    recall = {k: now.pop(k) for k in ("proposal_source", "proposal_recall")}
    assert recall["proposal_source"] == "selective_search"
    assert "300@0.5" in recall["proposal_recall"]
    assert now == then
    new, old = _files(tmp_path / "new"), _files(tmp_path / "old")
    metrics = json.loads(new["metrics.json"])
    assert {k: metrics.pop(k) for k in recall} == recall
    new["metrics.json"] = json.dumps(metrics).encode()
    old["metrics.json"] = json.dumps(json.loads(old["metrics.json"])).encode()
    assert new.keys() == old.keys() and len(new) >= 4  # results files, coco json, metrics, matches
    for name in new:
        assert new[name] == old[name], name
    lines = sum(b.count(b"\n") for n, b in new.items() if n.endswith(".txt"))
    if limits.get("score_thresh") == 0.99:
        assert lines == 0
    else:
        assert lines > 2 * len(split.dataset)  # several detections per image: grouping exercised
