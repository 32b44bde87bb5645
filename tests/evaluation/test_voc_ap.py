"""VOC AP rules on hand-worked cases, the vectorised matcher against a plain loop, and real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ohemcli.boxes import iou_np
from ohemcli.data.voc import ImageRecord, VOCDataset
from ohemcli.evaluation.coco import evaluate_coco
from ohemcli.evaluation.metrics import evaluate_all
from ohemcli.evaluation.results_files import ClassDetections, Detections
from ohemcli.evaluation.voc_ap import ClassGT, evaluate_class, evaluate_voc, voc_ap
from tests.conftest import shared_root
from tests.reference_voc import reference_class

BOX = [0.0, 0.0, 9.0, 9.0]  # 10 x 10 pixels with the +1 convention
FAR = [50.0, 50.0, 59.0, 59.0]  # overlaps nothing near the origin


def dets(*rows: tuple[str, float, list[float]]) -> ClassDetections:
    """ClassDetections from (image_id, score, box) rows, in file order."""
    return ClassDetections([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def gt(**images: list[tuple[list[float], bool]]) -> ClassGT:
    """ClassGT from image_id=[(box, difficult), ...]."""
    return {
        k: (np.array([b for b, _ in v], float).reshape(-1, 4), np.array([d for _, d in v], bool))
        for k, v in images.items()
    }


# --- voc_ap on given curves ------------------------------------------------------------------


def test_voc07_and_voc10_differ_on_the_same_curve():
    # Curve of TP, FP, TP over 2 positives: recall .5 .5 1, precision 1 .5 2/3.
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # voc07: thresholds 0..0.5 (6 of them) reach precision 1; 0.6..1 (5) only 2/3.
    assert voc_ap(rec, prec, "voc07") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)  # 28/33
    # voc10: envelope 1 on [0, .5], 2/3 on (.5, 1]: 0.5 + 1/3.
    assert voc_ap(rec, prec, "voc10") == pytest.approx(5 / 6)


def test_voc07_counts_a_recall_of_exactly_three_tenths():
    # 3 of 10 positives found at precision 1: thresholds 0, .1, .2 and .3 are reached -> 4/11.
    # (np.arange(0, 1.1, 0.1)'s third step is 0.30000000000000004, which would give 3/11.)
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), "voc07") == pytest.approx(4 / 11)


def test_voc_ap_of_an_empty_curve_is_zero_and_unknown_metric_fails():
    assert voc_ap(np.zeros(0), np.zeros(0), "voc07") == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), "voc10") == 0.0
    with pytest.raises(ValueError, match="voc12"):
        voc_ap(np.zeros(0), np.zeros(0), "voc12")  # type: ignore[arg-type]


# --- matching rules ---------------------------------------------------------------------------


def test_ties_keep_file_order():
    truth = gt(a=[(BOX, False)])
    # Both score 0.9. FP first in the file: FP then TP, precision .5 at recall 1 -> AP .5.
    fp_first = evaluate_class(dets(("a", 0.9, FAR), ("a", 0.9, BOX)), truth)
    # TP first: precision 1 at recall 1 -> AP 1.
    tp_first = evaluate_class(dets(("a", 0.9, BOX), ("a", 0.9, FAR)), truth)
    assert fp_first.ap == pytest.approx(0.5)
    assert tp_first.ap == pytest.approx(1.0)


def test_many_ties_keep_file_order():
    # File order: 19 FPs at 0.5, the TP at 0.5, then 20 FPs at 0.9. Ranked stably: the 20 at 0.9,
    # then the 0.5s in file order, so the TP is 40th: precision 1/40 at recall 1 -> AP 0.025.
    # (numpy's default argsort is not stable here: it puts the TP 33rd.)
    rows = [("a", 0.5, FAR)] * 19 + [("a", 0.5, BOX)] + [("a", 0.9, FAR)] * 20
    result = evaluate_class(dets(*rows), gt(a=[(BOX, False)]))
    assert result.ap == pytest.approx(1 / 40)
    assert result.recall[-2] == 0.0 and result.recall[-1] == 1.0


def test_detection_on_a_difficult_box_is_ignored():
    truth = gt(a=[(BOX, False), (FAR, True)])
    # Ranked: on the difficult box (ignored), then the TP. Were the first an FP, AP would be .5.
    result = evaluate_class(dets(("a", 0.9, FAR), ("a", 0.8, BOX)), truth)
    assert result.num_gt == 1  # the difficult box is not a positive
    assert result.ap == pytest.approx(1.0)
    assert result.precision.tolist() == [0.0, 1.0]  # tp 0 + fp 0 before the TP


def test_second_detection_of_a_box_is_a_false_positive():
    truth = gt(a=[(BOX, False)], b=[(BOX, False)])
    # TP on a, duplicate on a, TP on b: the curve of the voc07/voc10 test above.
    result = evaluate_class(dets(("a", 0.9, BOX), ("a", 0.8, BOX), ("b", 0.7, BOX)), truth)
    assert result.recall.tolist() == [0.5, 0.5, 1.0]
    assert result.precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert result.ap == pytest.approx(28 / 33)
    assert evaluate_class(
        dets(("a", 0.9, BOX), ("a", 0.8, BOX), ("b", 0.7, BOX)), truth, "voc10"
    ).ap == pytest.approx(5 / 6)


def test_iou_of_exactly_one_half_is_not_a_match():
    # GT 10x10 = 100 px; [0,0,9,4] is 10x5 = 50 px inside it: IoU = 50 / 100 = 0.5 exactly.
    half = [0.0, 0.0, 9.0, 4.0]
    assert iou_np(np.array([half]), np.array([BOX]), plus_one=True)[0] == 0.5
    assert evaluate_class(dets(("a", 0.9, half)), gt(a=[(BOX, False)])).ap == 0.0
    # One more row: 10x6 = 60 px, IoU 0.6 -> a TP.
    assert evaluate_class(dets(("a", 0.9, [0, 0, 9, 5])), gt(a=[(BOX, False)])).ap == 1.0


def test_plus_one_convention_decides_a_match():
    # GT [0,0,10,10], det [0,0,10,5]. Without +1: 50 / 100 = 0.5, no match.
    # With +1: 11x6 = 66 inside 11x11 = 121, IoU 66/121 = 0.545 -> a TP.
    det_box, gt_box = [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 10.0]
    iou = iou_np(np.array([det_box]), np.array([gt_box]), plus_one=True)[0]
    assert iou == pytest.approx(66 / 121)
    assert evaluate_class(dets(("a", 0.9, det_box)), gt(a=[(gt_box, False)])).ap == 1.0


def test_match_goes_to_highest_iou_box_even_if_claimed():
    # The det overlaps box1 most (IoU 1) and box2 a little (above .5 is impossible for both).
    # Box1 is already claimed by the first det, so the second is an FP, not a TP on box2.
    box2 = [0.0, 0.0, 9.0, 14.0]  # IoU with BOX = 100 / 150
    truth = gt(a=[(BOX, False), (box2, False)])
    result = evaluate_class(dets(("a", 0.9, BOX), ("a", 0.8, BOX)), truth)
    assert result.recall.tolist() == [0.5, 0.5]
    assert result.precision.tolist() == [1.0, 0.5]


def test_tie_between_two_boxes_goes_to_the_first_listed():
    # Two identical GT boxes: the det's IoU ties, np.argmax (and MATLAB's max) take the first.
    # Non-difficult first: a TP. Difficult first: ignored, so the class is never found: AP 0.
    assert evaluate_class(dets(("a", 0.9, BOX)), gt(a=[(BOX, False), (BOX, True)])).ap == 1.0
    assert evaluate_class(dets(("a", 0.9, BOX)), gt(a=[(BOX, True), (BOX, False)])).ap == 0.0


def test_class_with_positives_and_no_detections_has_ap_zero():
    for metric in ("voc07", "voc10"):
        result = evaluate_class(ClassDetections(), gt(a=[(BOX, False)]), metric)
        assert (result.ap, result.num_gt, result.num_det) == (0.0, 1, 0)


def test_detection_on_an_image_without_ground_truth_is_a_false_positive():
    result = evaluate_class(dets(("b", 0.9, BOX), ("a", 0.8, BOX)), gt(a=[(BOX, False)]))
    assert result.precision.tolist() == [0.0, 0.5]  # FP (image b), then TP: AP .5
    assert result.ap == pytest.approx(0.5)


def test_class_without_positives_has_nan_ap_and_is_left_out_of_map():
    only_difficult = gt(a=[(BOX, True)])
    assert math.isnan(evaluate_class(dets(("a", 0.9, FAR)), only_difficult).ap)
    records = [_record("a", [BOX, FAR], [1, 2], [False, True])]
    d: Detections = {"cat": dets(("a", 0.9, BOX)), "dog": dets(("a", 0.9, BOX))}
    result = evaluate_voc(d, records, ["cat", "dog"])
    # cat: AP 1; dog: only a difficult box, AP undefined; mAP over cat alone.
    assert result.ap["cat"] == 1.0 and math.isnan(result.ap["dog"])
    assert result.mAP == 1.0
    summary = evaluate_all(d, records, ["cat", "dog"], "voc07")
    assert summary["AP"]["dog"] is None  # JSON has no NaN


def _record(image_id: str, boxes, labels, difficult) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        image_path=None,  # type: ignore[arg-type]
        width=100,
        height=100,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=np.array(labels, np.int64),
        difficult=np.array(difficult, bool),
    )


# --- the vectorised matcher against a plain per-detection loop --------------------------------


coord = st.integers(0, 30)
side = st.integers(0, 15)


@st.composite
def scenario(draw):
    """A few images with integer boxes (so IoU ties and exact 0.5s happen) and tied scores."""
    truth = {}
    for i in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 4))
        boxes = []
        for _ in range(n):
            if boxes and draw(st.integers(0, 3)) == 0:  # a repeated box: IoU ties between GTs
                boxes.append(list(boxes[draw(st.integers(0, len(boxes) - 1))]))
                continue
            x, y, w, h = draw(coord), draw(coord), draw(side), draw(side)
            boxes.append([x, y, x + w, y + h])
        flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        truth[f"img{i}"] = (np.array(boxes, float).reshape(-1, 4), np.array(flags, bool))
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        image_id = draw(st.sampled_from([*truth, "nogt"]))
        boxes = truth.get(image_id, (np.zeros((0, 4)), None))[0]
        if len(boxes) and draw(st.booleans()):  # a jittered copy of a GT box
            base = boxes[draw(st.integers(0, len(boxes) - 1))]
            jitter = np.array([draw(st.integers(-3, 3)) for _ in range(4)], float)
            box = base + jitter
            box[2:] = np.maximum(box[2:], box[:2])
        else:
            x, y, w, h = draw(coord), draw(coord), draw(side), draw(side)
            box = np.array([x, y, x + w, y + h], float)
        rows.append((image_id, draw(st.sampled_from([0.1, 0.5, 0.5, 0.9, 0.3])), box.tolist()))
    return dets(*rows), truth


@settings(max_examples=300, deadline=None)
@given(scenario(), st.sampled_from(["voc07", "voc10"]))
def test_vectorised_matches_the_plain_loop(case, metric):
    cd, truth = case
    rec, prec, ap = reference_class(cd, truth, metric)
    result = evaluate_class(cd, truth, metric)
    np.testing.assert_array_equal(result.recall, rec)  # NaNs compare equal here
    np.testing.assert_array_equal(result.precision, prec)
    if math.isnan(ap):
        assert math.isnan(result.ap)
    else:
        assert result.ap == pytest.approx(ap, abs=1e-12)


# --- real data --------------------------------------------------------------------------------


def _truth_as_detections(ds: VOCDataset) -> Detections:
    """Every ground-truth box, difficult ones included, as a detection with score 1."""
    out: Detections = {}
    for k, name in enumerate(ds.classes):
        rows = [
            (r.image_id, 1.0, box.tolist())
            for r in ds.records
            for box in r.boxes[r.labels == k + 1]
        ]
        out[name] = dets(*rows)
    return out


@pytest.fixture(scope="module")
def voc100() -> VOCDataset:
    return VOCDataset(shared_root("voc100"), "test")


def test_voc100_ground_truth_scores_ap_one_for_every_class(voc100):
    for metric in ("voc07", "voc10"):
        result = evaluate_voc(_truth_as_detections(voc100), voc100.records, voc100.classes, metric)
        assert result.ap == {name: 1.0 for name in voc100.classes}
        assert result.mAP == 1.0
        assert sum(result.num_gt.values()) == 273 - 38  # positives exclude the 38 difficult


def test_voc100_missing_class_scores_zero_and_lowers_map(voc100):
    d = _truth_as_detections(voc100)
    del d["person"]
    result = evaluate_voc(d, voc100.records, voc100.classes)
    assert result.ap["person"] == 0.0
    assert result.mAP == pytest.approx(19 / 20)


def test_coco_on_perfect_detections_is_one_and_prints_nothing(voc100, capsys):
    coco = evaluate_coco(_truth_as_detections(voc100), voc100.records, voc100.classes)
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed
    assert coco["AP"] == pytest.approx(1.0)
    assert coco["AP50"] == pytest.approx(1.0)
    assert all(ap == pytest.approx(1.0) for ap in coco["per_class"].values())


def test_evaluate_all_shapes(voc100):
    d = _truth_as_detections(voc100)
    single = evaluate_all(d, voc100.records, voc100.classes, "voc10")
    assert {"metric", "mAP", "AP", "num_images", "num_gt", "num_det"} <= single.keys()
    assert (single["metric"], single["mAP"], single["num_images"]) == ("voc10", 1.0, 100)
    everything = evaluate_all(d, voc100.records, voc100.classes, "all")
    assert everything["metric"] == "all"
    assert set(everything["metrics"]) == {"voc07", "voc10", "coco"}
    assert everything["mAP"] == everything["metrics"]["voc07"]["mAP"] == 1.0
    assert everything["metrics"]["coco"]["coco"]["AP"] == pytest.approx(1.0)


def test_coco_without_any_detection_is_zero_not_a_crash(voc100):
    # pycocotools' loadRes fails on an empty list; we build the results set ourselves.
    coco = evaluate_coco({}, voc100.records, voc100.classes)
    assert (coco["AP"], coco["AP50"]) == (0.0, 0.0)
