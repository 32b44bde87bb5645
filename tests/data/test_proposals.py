"""Proposals: the Fast R-CNN .mat importer, selective search recall, and the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ohemcli.data import proposals as P
from ohemcli.data.synthetic import SYNTH_CLASSES, generate_synthetic
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


def test_changed_annotation_invalidates_the_cache(synth12: VOCDataset, tmp_path, monkeypatch):
    root = tmp_path / "copy"
    shutil.copytree(synth12.root, root)
    calls = []

    def fake(dataset: VOCDataset, max_boxes: int, workers=None, show_progress=True, max_side=0):
        calls.append(dataset.fingerprint())
        return {r.image_id: np.array([[0, 0, 9, 9]], np.float32) for r in dataset.records}

    monkeypatch.setattr(P, "compute_selective_search", fake)
    P.load_proposals(VOCDataset(root, "test"), show_progress=False)
    P.load_proposals(VOCDataset(root, "test"), show_progress=False)
    assert len(calls) == 1
    P.load_proposals(VOCDataset(root, "test"), show_progress=False, max_side=240)
    assert len(calls) == 2  # shrunk images give other boxes: another cache entry
    xml = root / "Annotations" / "000012.xml"
    text = xml.read_text()
    assert "<difficult>0</difficult>" in text
    xml.write_text(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    P.load_proposals(VOCDataset(root, "test"), show_progress=False)
    assert len(calls) == 3 and calls[0] != calls[2]
    assert not list((Path(P.cache_dir()) / "proposals").glob(".*.tmp"))  # no half-written files


def _fake_search(calls: list):
    def fake(dataset: VOCDataset, max_boxes: int, workers=None, show_progress=True, max_side=0):
        calls.append(dataset.fingerprint())
        return {r.image_id: np.array([[0, 0, 9, 9]], np.float32) for r in dataset.records}

    return fake


def test_an_unreadable_or_foreign_cache_file_is_recomputed(synth12, tmp_path, monkeypatch, caplog):
    import logging

    logging.getLogger("ohemcli").addHandler(caplog.handler)
    # A cache of its own: another test's copy of the same images may have cached a larger cap.
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "copy"
    shutil.copytree(synth12.root, root)
    calls: list = []
    monkeypatch.setattr(P, "compute_selective_search", _fake_search(calls))
    ds = VOCDataset(root, "test")
    first = P.load_proposals(ds, max_boxes=7, show_progress=False)
    path = P._cache_path(ds, 7, 0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated (BadZipFile)
    assert P.load_proposals(ds, max_boxes=7, show_progress=False).keys() == first.keys()
    assert len(calls) == 2 and any("does not load" in r.getMessage() for r in caplog.records)
    # Another data set's cache file with the same ids under this name: not served.
    P._save(path, {i: np.array([[1, 1, 5, 5]], np.float32) for i in first}, "0123456789abcdef")
    np.testing.assert_array_equal(
        P.load_proposals(ds, max_boxes=7, show_progress=False)[next(iter(first))], [[0, 0, 9, 9]]
    )
    assert len(calls) == 3 and any("other images" in r.getMessage() for r in caplog.records)
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
    monkeypatch.setattr(P, "atomic_write", full_disk)
    monkeypatch.setattr(P, "compute_selective_search", _fake_search([]))
    got = P.load_proposals(VOCDataset(synth12.root, "test"), max_boxes=3, show_progress=False)
    assert len(got) == 3
    assert any("OHEM_CACHE" in r.getMessage() for r in caplog.records)
    logging.getLogger("ohemcli").removeHandler(caplog.handler)
