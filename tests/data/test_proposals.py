"""Proposals: the Fast R-CNN .mat importer, selective search recall, and the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ohemcli.data.proposals import cache as C
from ohemcli.data.proposals import load as P
from ohemcli.data.synthetic.generate import SYNTH_CLASSES, generate_synthetic
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError


@pytest.fixture(scope="module")
def synth12(tmp_path_factory: pytest.TempPathFactory) -> VOCDataset:
    root = tmp_path_factory.mktemp("prop") / "synth"
    generate_synthetic(root, trainval=12, test=3, seed=3, show_progress=False)
    return VOCDataset(root, "trainval", SYNTH_CLASSES)


@pytest.fixture(scope="module")
def ss12(synth12: VOCDataset) -> dict[str, np.ndarray]:
    """Selective search through the process pool (and so into the cache)."""
    return P.load_proposals(synth12, workers=2, show_progress=False)


def _write_mat(path: Path, cells: list[np.ndarray]) -> Path:
    boxes = np.empty((1, len(cells)), dtype=object)
    for i, c in enumerate(cells):
        boxes[0, i] = c
    scipy.io.savemat(str(path), {"boxes": boxes})
    return path


def test_mat_columns_and_one_based_shift(tmp_path: Path) -> None:
    # Fast R-CNN files are y1 x1 y2 x2, 1-based.
    first = np.array([[11, 21, 51, 81], [1, 1, 240, 320]], dtype=np.float64)
    second = np.array([[5, 7, 9, 13]], dtype=np.uint16)
    path = _write_mat(tmp_path / "voc_2007_test.mat", [first, second])
    out = P.load_mat_proposals(path, ["a", "b"])
    np.testing.assert_array_equal(out["a"], [[20, 10, 80, 50], [0, 0, 319, 239]])
    np.testing.assert_array_equal(out["b"], [[6, 4, 12, 8]])
    assert out["a"].dtype == np.float32


def test_mat_count_mismatch_and_missing_file(tmp_path: Path) -> None:
    path = _write_mat(tmp_path / "voc_2007_test.mat", [np.ones((1, 4))])
    with pytest.raises(UserError, match="1 images but the split lists 2") as info:
        P.load_mat_proposals(path, ["a", "b"])
    assert str(path) in str(info.value)
    with pytest.raises(UserError, match="not found"):
        P.load_mat_proposals(tmp_path / "none.mat", ["a"])
    scipy.io.savemat(str(tmp_path / "other.mat"), {"rois": np.ones((2, 4))})
    with pytest.raises(UserError, match="no 'boxes'"):
        P.load_mat_proposals(tmp_path / "other.mat", ["a"])


def test_load_proposals_from_mat_cleans_and_caps(synth12: VOCDataset, tmp_path: Path) -> None:
    # y1 x1 y2 x2, 1-based: a good box, a duplicate, a 1-px sliver, one past the border.
    cell = np.array([[11, 21, 51, 81], [11, 21, 51, 81], [5, 5, 5, 50], [200, 300, 260, 400]])
    path = _write_mat(tmp_path / "m.mat", [cell] * len(synth12))
    out = P.load_proposals(synth12, source=str(path), max_boxes=5)
    np.testing.assert_array_equal(
        out[synth12[0].image_id], [[20, 10, 80, 50], [299, 199, 319, 239]]
    )
    capped = P.load_proposals(synth12, source=str(path), max_boxes=1)
    assert all(len(b) == 1 for b in capped.values())


def test_clean_boxes() -> None:
    raw = np.array([[5, 5, 50, 50], [-3, 2, 20.4, 30], [5, 5, 50, 50], [10, 10, 11, 40]])
    out = P.clean_boxes(raw, width=40, height=45, max_boxes=10)
    np.testing.assert_array_equal(out, [[5, 5, 39, 44], [0, 2, 20, 30]])
    assert P.clean_boxes(raw, 40, 45, max_boxes=1).shape == (1, 4)


def test_selective_search_recall_on_synthetic(synth12: VOCDataset, ss12) -> None:
    assert set(ss12) == {r.image_id for r in synth12.records}
    for r in synth12.records:
        boxes = ss12[r.image_id]
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        assert len(boxes) <= 2000
        assert (boxes[:, 2] - boxes[:, 0] >= 2).all() and (boxes[:, 3] - boxes[:, 1] >= 2).all()
        assert (boxes[:, 2] <= r.width - 1).all() and (boxes[:, 3] <= r.height - 1).all()
        assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert P.proposal_recall(synth12, ss12, 0.5) >= 0.9
    assert P.proposal_recall(synth12, ss12, 0.7) <= P.proposal_recall(synth12, ss12, 0.5)
    assert 50 <= P.mean_boxes_per_image(ss12) <= 2000


def test_selective_search_order_is_repeatable(synth12: VOCDataset, ss12) -> None:
    record = synth12[5]
    again = P.selective_search(str(record.image_path), 2000)
    np.testing.assert_array_equal(again, ss12[record.image_id])  # in-process == pool worker


def test_cache_hit_does_not_recompute(synth12: VOCDataset, ss12, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(P, "compute_selective_search", boom)
    cached = P.load_proposals(synth12, workers=2, show_progress=False)
    assert cached.keys() == ss12.keys()
    for image_id, boxes in ss12.items():
        np.testing.assert_array_equal(cached[image_id], boxes)
    with pytest.raises(AssertionError, match="recomputed"):  # a larger cap needs more boxes
        P.load_proposals(synth12, max_boxes=5000, show_progress=False)
    with pytest.raises(AssertionError, match="recomputed"):  # shrunk images: other boxes
        P.load_proposals(synth12, max_boxes=10, show_progress=False, max_side=100)


def test_a_smaller_cap_is_served_from_a_larger_cache(synth12: VOCDataset, ss12, monkeypatch):
    record = synth12[2]
    fresh = P.selective_search(str(record.image_path), 10)  # computed with the cap itself
    monkeypatch.setattr(P, "compute_selective_search", None)  # any call would fail
    capped = P.load_proposals(synth12, max_boxes=10, show_progress=False)
    assert all(len(boxes) <= 10 for boxes in capped.values())
    np.testing.assert_array_equal(capped[record.image_id], fresh)


def _fake_search(calls: list):
    """A stand-in for selective search that records the paths it is asked for."""

    def fake(paths, max_boxes: int, workers=None, show_progress=True, max_side=0):
        calls.extend(str(p) for p in paths)
        return [np.array([[0, 0, 9, 9], [1, 1, 12, 12]], np.float32)[: max_boxes or None]] * len(
            paths
        )

    return fake


def _add_image(root: Path, new_id: str, like: str, split: str) -> None:
    """Give image ``like``'s bytes and annotation a second id, listed in ``split``."""
    shutil.copy(root / "JPEGImages" / f"{like}.jpg", root / "JPEGImages" / f"{new_id}.jpg")
    shutil.copy(root / "Annotations" / f"{like}.xml", root / "Annotations" / f"{new_id}.xml")
    with open(root / "ImageSets" / "Main" / f"{split}.txt", "a") as f:
        f.write(f"{new_id}\n")


def test_an_image_in_two_splits_or_two_roots_is_searched_once(synth12, tmp_path, monkeypatch):
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(synth12.root, a)
    shutil.copytree(synth12.root, b)
    test_ids = [r.image_id for r in VOCDataset(a, "test").records]
    _add_image(a, "copy_of_first", test_ids[0], "test")  # the same bytes twice in one split
    calls: list = []
    monkeypatch.setattr(P, "compute_selective_search", _fake_search(calls))
    got = P.load_proposals(VOCDataset(a, "test"), max_boxes=7, show_progress=False)
    assert len(got) == len(test_ids) + 1 and len(calls) == len(test_ids)  # one search per image
    np.testing.assert_array_equal(got["copy_of_first"], got[test_ids[0]])
    # trainval of a and test of another root (b) with the same pixels: nothing new to search
    (a / "ImageSets" / "Main" / "mixed.txt").write_text("\n".join(test_ids[::-1]) + "\n")
    P.load_proposals(VOCDataset(a, "mixed"), max_boxes=7, show_progress=False)
    P.load_proposals(VOCDataset(b, "test"), max_boxes=7, show_progress=False)
    assert len(calls) == len(test_ids)
    P.load_proposals(VOCDataset(b, "test"), max_boxes=7, show_progress=False, max_side=240)
    assert len(calls) == 2 * len(test_ids)  # shrunk images give other boxes: other entries
    assert not list((Path(C.cache_dir()) / "proposals").rglob(".*.tmp"))  # no half-written files


def test_a_changed_image_is_searched_again(synth12, tmp_path, monkeypatch):
    import cv2

    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "copy"
    shutil.copytree(synth12.root, root)
    calls: list = []
    monkeypatch.setattr(P, "compute_selective_search", _fake_search(calls))
    P.load_proposals(VOCDataset(root, "test"), max_boxes=7, show_progress=False)
    first = len(calls)
    image = VOCDataset(root, "test")[1].image_path
    pixels = cv2.imread(str(image))
    pixels[:8, :8] = 255 - pixels[:8, :8]  # same size, other pixels
    assert cv2.imwrite(str(image), pixels)
    P.load_proposals(VOCDataset(root, "test"), max_boxes=7, show_progress=False)
    assert calls[first:] == [str(image)]  # that image alone
    # editing an annotation changes no pixel: nothing to search (the boxes depend on pixels only)
    xml = root / "Annotations" / f"{VOCDataset(root, 'test')[0].image_id}.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>"))
    P.load_proposals(VOCDataset(root, "test"), max_boxes=7, show_progress=False)
    assert len(calls) == first + 1


def test_the_cache_layout_is_one_file_per_image_and_cap(synth12, tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "compute_selective_search", _fake_search([]))
    ds = VOCDataset(synth12.root, "test")
    P.load_proposals(ds, max_boxes=7, show_progress=False, max_side=240)
    digest = hashlib.sha1(ds[0].image_path.read_bytes()).hexdigest()  # independent of the code
    path = tmp_path / "cache" / "proposals" / f"ssfast-{C.PROPOSALS_VERSION}-max240"
    path = path / digest[:2] / f"{digest}-7.npy"
    np.testing.assert_array_equal(np.load(path), [[0, 0, 9, 9], [1, 1, 12, 12]])
    files = list((tmp_path / "cache" / "proposals").rglob("*.npy"))
    assert len(files) == len({hashlib.sha1(r.image_path.read_bytes()).digest() for r in ds})


def test_a_smaller_cap_is_a_prefix_of_a_larger_cached_one(synth12, tmp_path, monkeypatch):
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    calls: list = []
    monkeypatch.setattr(P, "compute_selective_search", _fake_search(calls))
    ds = VOCDataset(synth12.root, "test")
    P.load_proposals(ds, max_boxes=0, show_progress=False)  # every box
    assert len(calls) == len(ds)
    one = P.load_proposals(ds, max_boxes=1, show_progress=False)
    assert len(calls) == len(ds)  # served from the uncapped files
    assert all(b.tolist() == [[0, 0, 9, 9]] for b in one.values())
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache2"))
    P.load_proposals(ds, max_boxes=1, show_progress=False)
    P.load_proposals(ds, max_boxes=2, show_progress=False)  # a larger cap: a new search
    assert len(calls) == 3 * len(ds)


def test_an_unreadable_cache_file_is_recomputed_with_one_warning(
    synth12, tmp_path, monkeypatch, caplog
):
    import logging

    logging.getLogger("ohemcli").addHandler(caplog.handler)
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    calls: list = []
    monkeypatch.setattr(P, "compute_selective_search", _fake_search(calls))
    ds = VOCDataset(synth12.root, "test")
    first = P.load_proposals(ds, max_boxes=7, show_progress=False)
    files = sorted((tmp_path / "cache" / "proposals").rglob("*.npy"))
    files[0].write_bytes(files[0].read_bytes()[:20])  # truncated
    np.save(files[1], np.zeros((2, 5), np.float32))  # not (R, 4)
    again = P.load_proposals(ds, max_boxes=7, show_progress=False)
    assert again.keys() == first.keys() and len(calls) == len(ds) + 2  # those two, once each
    # a set: caplog may see a record twice (its own handler and ours)
    warned = {r.getMessage() for r in caplog.records if "does not load" in r.getMessage()}
    assert len(warned) == 1 and "1 more" in warned.pop()
    logging.getLogger("ohemcli").removeHandler(caplog.handler)


def test_a_replaced_image_of_the_same_size_changes_the_key(synth12, tmp_path):
    import os

    root = tmp_path / "copy"
    shutil.copytree(synth12.root, root)
    before = VOCDataset(root, "test").fingerprint()
    image = VOCDataset(root, "test")[0].image_path
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes count
    assert VOCDataset(root, "test").fingerprint() != before


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_boxes(
    synth12, tmp_path, monkeypatch, caplog
):
    import logging

    logging.getLogger("ohemcli").addHandler(caplog.handler)

    def full_disk(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))  # nothing cached for these images
    monkeypatch.setattr(C, "atomic_write", full_disk)
    monkeypatch.setattr(P, "compute_selective_search", _fake_search([]))
    got = P.load_proposals(VOCDataset(synth12.root, "test"), max_boxes=3, show_progress=False)
    assert len(got) == 3
    warned = {r.getMessage() for r in caplog.records if "OHEM_CACHE" in r.getMessage()}
    assert len(warned) == 1  # one line, not one per image
    logging.getLogger("ohemcli").removeHandler(caplog.handler)
