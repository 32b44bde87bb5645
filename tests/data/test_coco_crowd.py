"""Crowd regions: proposals inside one are never chosen by any sampler, crowds are never targets,
and a detection on one is neither TP nor FP (our evaluator and pycocotools on the json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ohemcli.data.batching import TrainImages
from ohemcli.data.splits import open_dataset
from ohemcli.data.targets import outside_crowd
from ohemcli.evaluation.coco import evaluate_coco_json
from ohemcli.evaluation.results_files import ClassDetections
from ohemcli.evaluation.voc_ap import evaluate_voc
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs
from ohemcli.samplers.fixed import FixedSampler
from ohemcli.samplers.hnm import HNMSampler
from ohemcli.samplers.ohem import OHEMSampler
from tests.data.coco_sets import coco_doc, coco_layout

OBJECT = [2.0, 2.0, 10.0, 10.0]  # x, y, w, h: the one real object
CROWD = [20.0, 0.0, 28.0, 40.0]  # the right part of the 48x40 image


def test_iof_is_intersection_over_the_rois_own_area():
    crowd = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    rois = torch.tensor(
        [
            [0.0, 0.0, 4.0, 4.0],  # inside: IoF 1 (its IoU with the crowd is only 0.16)
            [5.0, 0.0, 15.0, 10.0],  # half inside: 50 / 100 = 0.5, not above the threshold
            [4.0, 0.0, 14.0, 10.0],  # 60 / 100 = 0.6
            [20.0, 20.0, 30.0, 30.0],  # apart: 0
        ]
    )
    assert outside_crowd(rois, crowd).tolist() == [False, True, False, True]
    assert outside_crowd(rois, torch.zeros(0, 4)).tolist() == [True] * 4


def _crowd_set(tmp_path: Path):
    doc = coco_doc(1, boxes={1: [(5, OBJECT), (5, CROWD)]})
    doc["annotations"][1]["iscrowd"] = 1
    return open_dataset(str(coco_layout(tmp_path / "c", {"t": doc})), "t")


def _proposals() -> np.ndarray:
    return np.array(
        [
            [2.0, 2.0, 12.0, 12.0],  # the object: foreground
            [24.0, 4.0, 40.0, 30.0],  # inside the crowd
            [21.0, 10.0, 47.0, 39.0],  # inside the crowd
            [0.0, 20.0, 14.0, 39.0],  # background, apart from both
            [12.0, 0.0, 28.0, 16.0],  # half over the crowd: IoF 8/16 = 0.5, kept
        ],
        np.float32,
    )


@pytest.mark.parametrize("use_difficult", [False, True])
def test_proposals_inside_a_crowd_are_left_out_and_the_crowd_is_no_target(tmp_path, use_difficult):
    dataset = _crowd_set(tmp_path)
    images = TrainImages(dataset, {"1": _proposals()}, 40, 48, use_difficult=use_difficult)  # type: ignore[arg-type]
    rois, gt_boxes, gt_labels = images.image_rois(0)
    kept = _proposals()[[0, 3, 4]]
    # proposals outside the crowd, then the ground truth: the object only, never the crowd
    np.testing.assert_array_equal(rois.numpy(), np.vstack([kept, [[2.0, 2.0, 12.0, 12.0]]]))
    assert gt_boxes.tolist() == [[2.0, 2.0, 12.0, 12.0]] and gt_labels.tolist() == [1]


def test_no_sampler_chooses_a_roi_inside_a_crowd(tmp_path):
    dataset = _crowd_set(tmp_path)
    images = TrainImages(dataset, {"1": _proposals()}, 40, 48)  # type: ignore[arg-type]
    sample = images[(0, False)]
    inside = torch.from_numpy(_proposals()[1:3])
    rois = ImageRoIs(sample.rois, sample.labels, sample.max_iou, sample.box_targets, "1")
    # each sampler may take every RoI it is offered (64 wanted, 4 offered): none is in the crowd
    losses = RoILosses(
        torch.arange(len(rois.labels), dtype=torch.float32), torch.zeros(len(rois.labels))
    )
    gen = torch.Generator().manual_seed(0)
    for sampler in (FixedSampler(bg_lo=0.0), OHEMSampler(nms_iou=None), HNMSampler()):
        chosen = sampler.select(rois, losses, 64, gen)
        boxes = sample.rois[chosen] / sample.factor
        for box in inside:
            assert not any(torch.allclose(b, box, atol=1e-4) for b in boxes), type(sampler)
    assert len(sample.rois) == 4  # 3 proposals + 1 ground truth


def test_a_detection_on_a_crowd_is_neither_tp_nor_fp(tmp_path):
    dataset = _crowd_set(tmp_path)
    # ranked: on the crowd (score 0.9), on the object (0.8), on nothing (0.7)
    dets = ClassDetections(
        ["1", "1", "1"],
        [0.9, 0.8, 0.7],
        [[22.0, 2.0, 46.0, 38.0], [2.0, 2.0, 12.0, 12.0], [0.0, 30.0, 8.0, 39.0]],
    )
    result = evaluate_voc({"thing": dets}, dataset.records, dataset.classes)
    r = result.per_class["thing"]
    assert r.tp.tolist() == [False, True, False] and r.fp.tolist() == [False, False, True]
    assert r.num_gt == 1 and result.ap["thing"] == pytest.approx(1.0)  # precision 1 at recall 1
    coco = evaluate_coco_json({"thing": dets}, dataset)
    # pycocotools on the json: the crowd detection is ignored there too, so AP50 is 1
    assert coco["AP50"] == pytest.approx(1.0)
