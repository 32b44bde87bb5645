"""A split with its proposals: per-split .mat files, and data.train_images."""

import numpy as np
import pytest
import scipy.io

from ohemcli.config import load_config
from ohemcli.data.splits import load_split
from ohemcli.errors import UserError
from tests.helpers import tiny_voc_root


def test_split_placeholder_picks_one_mat_file_per_split(tmp_path):
    root = tiny_voc_root(tmp_path, num_images=2)
    for split, x in (("trainval", 5), ("test", 7)):
        # Fast R-CNN files: one K x 4 array per image, columns y1 x1 y2 x2, 1-based.
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0] = cell[0, 1] = np.array([[3, x, 20, 40]], dtype=np.float64)
        scipy.io.savemat(tmp_path / f"p_{split}.mat", {"boxes": cell})
    cfg = load_config(
        None, {"data.root": str(root), "data.proposals": str(tmp_path / "p_{split}.mat")}
    )
    # 0-based x1 y1 x2 y2 = (x - 1, 2, 39, 19)
    assert load_split(cfg, "trainval").proposals["im000"].tolist() == [[4, 2, 39, 19]]
    assert load_split(cfg, "test").proposals["im001"].tolist() == [[6, 2, 39, 19]]


def test_train_images_keeps_the_first_k_train_ids_and_leaves_the_test_split_whole(tmp_path):
    root = tiny_voc_root(tmp_path, num_images=4)
    cfg = load_config(
        None, {"data.root": str(root), "data.train_images": 2, "data.max_proposals": 50}
    )
    train, test = load_split(cfg, "trainval", False), load_split(cfg, "test", False)
    assert [r.image_id for r in train.dataset.records] == ["im000", "im001"]  # file order
    assert sorted(train.proposals) == ["im000", "im001"]  # no search on the images left out
    assert len(test.dataset) == 4


def test_train_images_beyond_the_split_names_the_option(tmp_path):
    root = tiny_voc_root(tmp_path, num_images=3)
    cfg = load_config(None, {"data.root": str(root), "data.train_images": 5})
    with pytest.raises(UserError, match=r"^data.train_images: 5, but split 'trainval' .* has 3"):
        load_split(cfg, "trainval", False)


def _bare(root, ids, difficult=False):
    for image_id in ids:
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(
            (root / "JPEGImages" / "im000.jpg").read_bytes()
        )
        obj = (
            "<object><name>thing</name><difficult>1</difficult><bndbox><xmin>11</xmin>"
            "<ymin>11</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            "<annotation><size><width>64</width><height>64</height></size>"
            f"{obj if difficult else ''}</annotation>"
        )
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")


@pytest.mark.parametrize("difficult", [False, True])
def test_a_test_split_with_nothing_to_score_is_refused_naming_it(tmp_path, difficult):
    from ohemcli.data.splits import open_splits

    root = tiny_voc_root(tmp_path, num_images=2)
    cfg = load_config(None, {"data.root": str(root)})
    train, test = open_splits(cfg)  # one object per image: fine
    assert (len(train), len(test)) == (2, 2)
    _bare(root, ["b0", "b1"], difficult)  # no objects, or only difficult ones: no AP anywhere
    with pytest.raises(UserError, match=r"test\.txt: split 'test' \(2 images\) has no object"):
        open_splits(cfg)


def test_a_coco_test_split_with_nothing_to_score_is_refused_naming_its_json(tmp_path):
    from ohemcli.data.splits import check_scorable, open_dataset
    from tests.data.coco_sets import coco_doc, coco_layout

    other_only = coco_doc(2, [(5, "thing"), (6, "other")], {1: [(6, [8.0, 8.0, 16.0, 16.0])]})
    root = coco_layout(tmp_path / "c", {"train2017": coco_doc(2), "val2017": other_only})
    test = open_dataset(str(root), "test", ("thing",))  # no "thing" in the test split
    assert test.listing == root / "annotations" / "instances_val2017.json"
    with pytest.raises(UserError, match=r"instances_val2017\.json: split 'val2017' \(2 images\)"):
        check_scorable(test)
