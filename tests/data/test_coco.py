"""The COCO reader: layouts and split names, category ids to labels, unusable boxes, empty
images, sizes against the decoded image, and the proposals cache key."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ohemcli.config import load_config
from ohemcli.data.coco.dataset import COCODataset
from ohemcli.data.splits import load_split, open_dataset
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError
from tests.data.coco_sets import SIZE, coco_doc, coco_layout, roboflow_layout, write_split


def test_coco_layout_splits_by_name_and_the_default_names_find_train_and_val(tmp_path: Path):
    root = coco_layout(tmp_path / "c", {"train2017": coco_doc(3), "val2017": coco_doc(2)})
    train = open_dataset(str(root), "trainval")
    assert isinstance(train, COCODataset) and (train.split, len(train)) == ("train2017", 3)
    assert train.records[0].image_path == root / "train2017" / "img1.jpg"
    assert open_dataset(str(root), "test").split == "val2017"
    assert len(open_dataset(str(root), "val2017")) == 2
    with pytest.raises(UserError, match="no split 'test2017'.*train2017, val2017"):
        open_dataset(str(root), "test2017")


def test_roboflow_layout_tests_on_test_and_on_valid_when_there_is_no_test(tmp_path: Path):
    full = roboflow_layout(
        tmp_path / "r", {"train": coco_doc(3), "valid": coco_doc(2), "test": coco_doc(1)}
    )
    assert open_dataset(str(full), "trainval").split == "train"
    assert (open_dataset(str(full), "test").split, len(open_dataset(str(full), "test"))) == (
        "test",
        1,
    )
    no_test = roboflow_layout(tmp_path / "r2", {"train": coco_doc(3), "valid": coco_doc(2)})
    assert open_dataset(str(no_test), "test").split == "valid"


def test_explicit_json_files_with_an_image_folder(tmp_path: Path):
    images = tmp_path / "pics"
    a = write_split(tmp_path / "ann" / "instances_a.json", images, coco_doc(3))
    b = write_split(tmp_path / "ann" / "b.json", images, coco_doc(2))
    data = f"{a},{b}"
    train = open_dataset(data, "trainval", images=str(images))
    assert (train.split, len(train), train.root) == ("a", 3, images)
    assert open_dataset(data, "test", images=str(images)).split == "b"
    # without --images, file names are under the json's own folder, where there are none
    with pytest.raises(UserError, match="image not found"):
        open_dataset(data, "trainval")


def test_category_ids_become_labels_by_id_and_classes_pick_a_subset_in_order(tmp_path: Path):
    cats = [(12, "c"), (3, "a"), (7, "b")]
    boxes = {1: [(12, [1.0, 1.0, 10.0, 10.0]), (3, [2.0, 2.0, 10.0, 10.0])],
             2: [(7, [3.0, 3.0, 10.0, 10.0])]}  # fmt: skip
    root = coco_layout(tmp_path / "c", {"train": coco_doc(2, cats, boxes)})
    d = open_dataset(str(root), "train")
    assert d.classes == ("a", "b", "c") and d.category_ids == (3, 7, 12)
    assert d.records[0].labels.tolist() == [3, 1] and d.records[1].labels.tolist() == [2]
    picked = open_dataset(str(root), "train", ["c", "a"])
    assert picked.classes == ("c", "a") and picked.category_ids == (12, 3)
    assert picked.records[0].labels.tolist() == [1, 2] and len(picked.records[1].labels) == 0
    assert picked.unknown_objects == 1
    with pytest.raises(UserError, match="'d' is not a category"):
        open_dataset(str(root), "train", ["d"])


def test_unusable_boxes_are_dropped_with_one_warning_naming_the_file(tmp_path: Path, warnings_seen):
    boxes = {1: [(5, [8.0, 8.0, 16.0, 16.0]), (5, [8.0, 8.0, 0.5, 16.0]),
                 (5, [math.nan, 8.0, 16.0, 16.0]), (5, [100.0, 8.0, 16.0, 16.0])]}  # fmt: skip
    root = coco_layout(tmp_path / "c", {"train": coco_doc(1, boxes=boxes)})
    with warnings_seen.at_level(logging.WARNING, logger="ohemcli"):
        d = open_dataset(str(root), "train")
    lines = [r.getMessage() for r in warnings_seen.records]
    assert len(lines) == 1 and "instances_train.json: dropped 3 boxes" in lines[0]
    # [x, y, w, h] -> (x, y, x + w, y + h)
    assert d.records[0].boxes.tolist() == [[8.0, 8.0, 24.0, 24.0]]
    assert d.num_objects == 4 and len(d.dropped) == 3


def test_training_skips_images_without_a_usable_box_and_testing_never(
    tmp_path: Path, warnings_seen, monkeypatch
):
    # selective search in this process: a pool of spawned workers costs seconds to start
    monkeypatch.setattr("ohemcli.data.proposals.load.available_cpus", lambda: 1)
    doc = coco_doc(3, boxes={1: [(5, [8.0, 8.0, 16.0, 16.0])], 3: [(5, [0.0, 0.0, 30.0, 30.0])]})
    doc["annotations"][1]["iscrowd"] = 1  # image 3 holds only a crowd region: no usable box
    root = roboflow_layout(tmp_path / "r", {"train": doc, "test": doc})
    cfg = load_config(None, _keys(root))
    with warnings_seen.at_level(logging.WARNING, logger="ohemcli"):
        train = load_split(cfg, "train", show_progress=False)
    assert [r.image_id for r in train.dataset.records] == ["1"]
    assert any("skipped 2 training images" in r.getMessage() for r in warnings_seen.records)
    test = load_split(cfg, "test", show_progress=False)
    assert [r.image_id for r in test.dataset.records] == ["1", "2", "3"]
    kept = load_split(load_config(None, {**_keys(root), "data.keep_empty": True}), "train", False)
    assert len(kept.dataset) == 3


def _keys(root: Path) -> dict[str, object]:
    return {"data.root": str(root), "data.train_split": "train", "data.test_split": "test",
            "data.max_proposals": 10, "data.workers": 0, "data.ss_max_side": 0}  # fmt: skip


def _exif_rotated_jpeg(path: Path) -> None:
    """A 48x40 JPEG whose EXIF says 'rotate 90' (orientation 6): decoders show it 40x48."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", SIZE, (90, 90, 90)).save(path, exif=exif)


def test_a_size_that_disagrees_with_the_decoded_image_is_one_error(tmp_path: Path):
    doc = coco_doc(1)
    root = coco_layout(tmp_path / "c", {"train": doc})
    _exif_rotated_jpeg(root / "train" / "img1.jpg")
    assert cv2.imread(str(root / "train" / "img1.jpg")).shape[:2] == (48, 40)  # the decoder's
    with pytest.raises(UserError, match=r"img1\.jpg: 40 x 48 as decoded \(EXIF.*says 48 x 40"):
        open_dataset(str(root), "train")
    doc["images"][0].update(width=40, height=48)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    assert open_dataset(str(root), "train").records[0].width == 40


def _voc_with_numeric_ids(root: Path, coco_root: Path) -> Path:
    """A VOC root holding the COCO set's images under the ids '1', '2' (the COCO ids)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for i in (1, 2):
        (root / "JPEGImages" / f"{i}.jpg").write_bytes(
            (coco_root / "t" / f"img{i}.jpg").read_bytes()
        )
        (root / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><size><width>{SIZE[0]}</width><height>{SIZE[1]}</height></size><object>"
            "<name>thing</name><bndbox><xmin>9</xmin><ymin>9</ymin><xmax>24</xmax><ymax>24</ymax>"
            "</bndbox></object></annotation>"
        )
    (root / "ImageSets" / "Main" / "t.txt").write_text("1\n2\n")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("1\n2\n")  # classes come from it
    return root


def test_proposal_caches_of_a_voc_root_and_a_coco_set_follow_the_pixels_not_the_ids(
    tmp_path: Path, monkeypatch
):
    from ohemcli.data.proposals import load as proposals

    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    coco_root = coco_layout(tmp_path / "c", {"t": coco_doc(2)})
    coco = open_dataset(str(coco_root), "t")
    voc = open_dataset(str(_voc_with_numeric_ids(tmp_path / "v", coco_root)), "t")
    assert isinstance(voc, VOCDataset) and [r.image_id for r in voc.records] == ["1", "2"]
    assert [r.image_id for r in coco.records] == ["1", "2"]
    assert coco.fingerprint() != voc.fingerprint()
    calls: list[str] = []
    real = proposals.compute_selective_search

    def counted(paths, *args, **kwargs):
        calls.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(proposals, "compute_selective_search", counted)
    from_voc = proposals.load_proposals(voc, max_boxes=10, workers=1, show_progress=False)
    assert len(calls) == 2
    # the COCO set holds the same pixels: served from the VOC root's search
    from_coco = proposals.load_proposals(coco, max_boxes=10, workers=1, show_progress=False)  # type: ignore[arg-type]
    assert len(calls) == 2
    for i in ("1", "2"):
        np.testing.assert_array_equal(from_coco[i], from_voc[i])
    # the same ids over other pixels are other keys: never served the VOC root's boxes
    swapped = tmp_path / "swapped"
    _voc_with_numeric_ids(swapped, coco_root)
    (swapped / "JPEGImages" / "1.jpg").write_bytes((coco_root / "t" / "img2.jpg").read_bytes())
    (swapped / "JPEGImages" / "2.jpg").write_bytes((coco_root / "t" / "img1.jpg").read_bytes())
    other = proposals.load_proposals(
        open_dataset(str(swapped), "t"), max_boxes=10, workers=1, show_progress=False
    )  # type: ignore[arg-type]
    assert len(calls) == 2
    np.testing.assert_array_equal(other["1"], from_voc["2"])
    np.testing.assert_array_equal(other["2"], from_voc["1"])
    # a changed json is a changed data set: a new key
    before = coco.fingerprint()
    doc = coco_doc(2)
    doc["annotations"][0]["bbox"] = [9.0, 9.0, 15.0, 15.0]
    (coco_root / "annotations" / "instances_t.json").write_text(json.dumps(doc))
    assert open_dataset(str(coco_root), "t").fingerprint() != before


def test_crowd_regions_are_difficult_and_kept_apart(tmp_path: Path):
    doc = coco_doc(1, boxes={1: [(5, [8.0, 8.0, 16.0, 16.0]), (5, [0.0, 0.0, 40.0, 30.0])]})
    doc["annotations"][1]["iscrowd"] = 1
    d = open_dataset(str(coco_layout(tmp_path / "c", {"t": doc})), "t")
    r = d.records[0]
    assert r.crowd.tolist() == [False, True] and r.difficult.tolist() == [False, True]
    assert d.num_crowd == 1
    np.testing.assert_array_equal(r.boxes[1], [0.0, 0.0, 40.0, 30.0])
