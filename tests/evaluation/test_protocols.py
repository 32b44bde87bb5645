"""Test protocols by name; Fast R-CNN's adaptive per-class thresholds on hand-made detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ohemcli.cli.overrides import build_config
from ohemcli.config import EvalConfig, parse_config
from ohemcli.errors import UserError
from ohemcli.evaluation.protocols import FastRCNNTest
from ohemcli.evaluation.scoring import eval_protocol
from ohemcli.model.fast_rcnn import _top_per_class


def _boxes(n: int, x0: float = 0.0) -> np.ndarray:
    """``n`` boxes 20 px apart that do not overlap (NMS keeps them all)."""
    return np.array([[x0 + 20 * i, 0, x0 + 20 * i + 9, 9] for i in range(n)], np.float64)


def test_adaptive_thresholds_by_hand():
    # 2 images, on average 1 per class per image: max_per_set = 2; at most 2 per class per image.
    test = FastRCNNTest(num_images=2, per_class=1, max_per_image=2)
    # image 0, class 1: 0.9, 0.5, 0.3 -> the top 2 (0.9, 0.5) are kept; the heap holds 2, no more
    # than max_per_set, so thresh[1] stays -inf. Class 2: two overlapping boxes, 0.2 and 0.1.
    overlap = np.array([[0, 0, 9, 9], [0, 0, 9, 10]], np.float64)
    test.add(
        0,
        np.vstack([_boxes(3), overlap]),
        np.array([0.9, 0.5, 0.3, 0.2, 0.1]),
        np.array([1, 1, 1, 2, 2]),
    )
    assert test.thresh == {}
    # image 1, class 1: 0.6, 0.4, 0.95 -> top 2 (0.95, 0.6); the heap has 4 > 2: 0.5 and 0.6 pop,
    # and thresh[1] = the heap's minimum, 0.9
    test.add(1, _boxes(3), np.array([0.6, 0.4, 0.95]), np.array([1, 1, 1]))
    assert test.thresh == {1: 0.9}
    kept = {(image, j): sorted(s.tolist()) for image, j, _, s in test.finish(nms_iou=0.3)}
    # the final prune keeps scores above 0.9 only (0.9 itself goes: strictly above), and class 2,
    # never over its budget, keeps both boxes until NMS drops the overlapping 0.1
    assert kept == {(0, 1): [], (0, 2): [0.2], (1, 1): [0.95]}


def test_forty_per_class_per_image_by_hand():
    # one image, 100 candidates of one class scoring 0.01 .. 1.00: max_per_set = 40 * 1, the heap
    # keeps the 40 best (0.61 .. 1.00) and thresh = 0.61, so 39 survive (0.62 .. 1.00)
    test = FastRCNNTest(num_images=1)
    scores = np.arange(1, 101) / 100
    test.add(0, _boxes(100), scores, np.ones(100, int))
    assert test.thresh[1] == pytest.approx(0.61)
    ((_, _, boxes, kept),) = test.finish(nms_iou=0.3)
    assert sorted(kept.tolist()) == pytest.approx((np.arange(62, 101) / 100).tolist())
    assert len(boxes) == 39


def test_an_image_offers_at_most_100_per_class():
    test = FastRCNNTest(num_images=10)  # budget 400: nothing is pruned
    scores = np.linspace(0.01, 0.99, 150)
    test.add(0, _boxes(150), scores, np.ones(150, int))
    ((_, _, _, kept),) = test.finish(nms_iou=0.3)
    assert len(kept) == 100 and kept.min() == pytest.approx(scores[50])


def test_the_model_hands_over_each_classes_100_best_without_a_floor():
    torch.manual_seed(0)
    scores = torch.rand(150, 3) * 0.01  # all far under the default protocol's 0.05
    boxes = torch.rand(150, 3, 4)
    labels = torch.arange(1, 4).expand(150, 3)
    b, s, lab = _top_per_class(boxes, scores, labels)
    assert len(s) == 300
    for j in range(3):
        best = scores[:, j].topk(100).values
        assert torch.equal(s[lab == j + 1].sort(descending=True).values, best)
        assert torch.equal(b[lab == j + 1][0], boxes[scores[:, j].argmax(), j])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ("default", 100, 0.05)),
        ({"test_protocol": "ohem-release"}, ("ohem-release", 2000, 0.00001)),
        ({"test_protocol": "fast-rcnn"}, ("fast-rcnn", 100, 0.05)),
        ({"max_dets": 300}, ("custom", 300, 0.05)),
        ({"score_thresh": 0.001}, ("custom", 100, 0.001)),
    ],
)
def test_the_option_names_the_protocol_in_the_config(params, expected):
    e = build_config("voc07_vgg16", {"data": "synth", **params}).eval
    assert (e.protocol, e.max_dets, e.score_thresh) == expected


def test_a_protocol_and_limits_at_once_is_one_line():
    with pytest.raises(UserError, match=r"^--test-protocol and --max-dets: give one"):
        build_config("voc07_vgg16", {"test_protocol": "fast-rcnn", "max_dets": 5})
    with pytest.raises(UserError, match=r"^c.yaml: eval.protocol default means max_dets 100"):
        parse_config("eval: {protocol: default, max_dets: 300}\n", "c.yaml")


def test_an_old_config_is_named_by_its_limits():
    def name(text: str) -> str | None:
        return parse_config(text, "config.yaml").eval.protocol

    assert name("eval: {max_dets: 2000, score_thresh: 0.00001}\n") == "ohem-release"
    assert name("eval: {max_dets: 100, score_thresh: 0.05}\n") == "default"
    assert name("eval: {max_dets: 7}\n") == "custom"


def test_every_result_records_its_protocol_by_name():
    assert eval_protocol(EvalConfig(protocol="default")) == {
        "name": "default", "max_dets": 100, "score_thresh": 0.05, "nms": 0.3
    }  # fmt: skip
    assert eval_protocol(EvalConfig(protocol="fast-rcnn", nms=0.3)) == {
        "name": "fast-rcnn", "per_class_per_image": 40, "max_per_class_per_image": 100, "nms": 0.3
    }  # fmt: skip
    assert eval_protocol(EvalConfig(max_dets=5))["name"] == "custom"
