"""The data layer refuses or drops bad input by name: numbers, sizes, names, paths, text files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ohemcli.data.checks import child_path, clip_box, name_problem
from ohemcli.data.voc import VOCDataset, load_image
from ohemcli.errors import UserError
from ohemcli.evaluation.metrics import evaluate_all
from ohemcli.evaluation.results_files import ClassDetections, write_results_files
from tests.data.bad_voc import DROPPED, REFUSED, annotation, make_root, png_header


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_in_one_line_naming_the_culprit(tmp_path: Path, case: str) -> None:
    root, culprit = REFUSED[case](tmp_path)
    with pytest.raises(UserError) as info:
        VOCDataset(root, "trainval", ["blob"] if "class name" not in case else None)
    message = str(info.value)
    assert str(culprit) in message
    assert "\n" not in message


@pytest.mark.parametrize("case", sorted(DROPPED))
def test_dropped_with_a_warning(tmp_path: Path, case: str, warnings_seen) -> None:
    root, culprit = DROPPED[case](tmp_path)
    ds = VOCDataset(root, "trainval", ["blob"])
    assert len(ds) == 1 and len(ds[0].boxes) == 0
    assert ds.num_objects == 1 and len(ds.dropped) == 1
    assert str(culprit) in ds.dropped[0]
    assert any(str(culprit) in r.getMessage() for r in warnings_seen.records)


def test_box_overhanging_a_little_is_clipped(tmp_path: Path) -> None:
    # 1-based xmax 66 in a 64 px wide image: 0-based 65, two pixels over, clipped to 63.
    root, _ = make_root(tmp_path, xml=annotation(x1=0, x2=66))
    ds = VOCDataset(root, "trainval")
    np.testing.assert_array_equal(ds[0].boxes, [[0, 1, 63, 39]])
    assert ds.dropped == []


def test_split_file_with_bom_reads(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path, split_bytes=b"\xef\xbb\xbfa\r\n")
    assert [r.image_id for r in VOCDataset(root, "trainval").records] == ["a"]


def test_duplicate_ids_counted_once(tmp_path: Path, warnings_seen) -> None:
    root, _ = make_root(tmp_path, split_bytes=b"a\na\n")
    ds = VOCDataset(root, "trainval")
    assert len(ds) == 1
    assert any("trainval.txt:2" in r.getMessage() for r in warnings_seen.records)
    # One detection on the one box: AP 1, and one positive (not two).
    dets = {"blob": ClassDetections(["a"], [0.9], ds[0].boxes.astype(np.float64))}
    result = evaluate_all(dets, ds.records, ds.classes, "voc07")
    assert result["num_gt"]["blob"] == 1
    assert result["mAP"] == pytest.approx(1.0)


def test_oversized_image_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_header(20_000, 20_000))  # 400 Mpx declared, a few bytes on disk
    with pytest.raises(UserError, match="over the limit"):
        load_image(path)


def test_results_writer_keeps_class_names_inside(tmp_path: Path) -> None:
    out = tmp_path / "run" / "eval"
    out.mkdir(parents=True)
    evil = "x/../../../../escaped/evil"
    with pytest.raises(UserError) as info:
        write_results_files({evil: ClassDetections()}, out, "test")
    assert str(out) in str(info.value)
    assert list(tmp_path.rglob("*.txt")) == []
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "a\\b", "..", ".", "", "a\x00b", "a\nb", "x" * 201, "a..b"],
)
def test_unsafe_names(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["000005", "2008_000001", "BloodImage_00338", "potted plant"])
def test_safe_names(name: str) -> None:
    assert name_problem(name) is None


def test_child_path_stays_under_root(tmp_path: Path) -> None:
    assert child_path(tmp_path, "a", "b.txt") == tmp_path / "a" / "b.txt"
    for parts in (("..", "x"), ("a", "..", "..", "x"), ("/etc/passwd",), (".",)):
        with pytest.raises(UserError, match="leaves"):
            child_path(tmp_path, *parts)


def test_clip_box_rules() -> None:
    assert clip_box((-1.0, 0.0, 64.0, 47.0), 64, 48) == ((0.0, 0.0, 63.0, 47.0), "")
    assert clip_box((0.0, 0.0, 1e30, 10.0), 64, 48)[0] is None
    assert clip_box((float("nan"), 0.0, 10.0, 10.0), 64, 48)[1] == "non-finite coordinates"
    # 5% of a 1000 px side may overhang: 1049 is kept and clipped, 1051 dropped.
    assert clip_box((0.0, 0.0, 1049.0, 10.0), 1000, 48)[0] == (0.0, 0.0, 999.0, 10.0)
    assert clip_box((0.0, 0.0, 1051.0, 10.0), 1000, 48)[0] is None


def test_a_per_class_split_list_reads_its_ids(tmp_path: Path) -> None:
    # VOC's <class>_<split>.txt: an id and a label of -1, 0 or 1 per line.
    root, _ = make_root(tmp_path, split_bytes=b"a -1\n")
    assert [r.image_id for r in VOCDataset(root, "trainval").records] == ["a"]


@pytest.mark.parametrize("w, h", [(640, 480), (2, 2)])
def test_the_decoded_size_wins_over_the_xml_once_warned(
    tmp_path: Path, w: int, h: int, warnings_seen
) -> None:
    # The image is 64 x 48 (make_root); the XML claims otherwise. The box (1-based 1..30 x
    # 2..40) fits the real image, so it must be kept unclipped, not dropped or cut to 2 x 2.
    root, xml = make_root(tmp_path, xml=annotation(w=w, h=h))
    ds = VOCDataset(root, "trainval")
    assert (ds[0].width, ds[0].height) == (64, 48)
    np.testing.assert_array_equal(ds[0].boxes, [[0, 1, 29, 39]])
    # caplog may hold a record twice (this handler and the root's): count distinct records
    said = {id(r): r.getMessage() for r in warnings_seen.records if str(xml) in r.getMessage()}
    assert len(said) == 1
    message = next(iter(said.values()))
    assert f"says {w} x {h}" in message and "a.jpg is 64 x 48" in message
    VOCDataset(root, "trainval")  # read again (train and test, say): no second warning
    assert len({id(r) for r in warnings_seen.records if str(xml) in r.getMessage()}) == 1


def test_an_image_replaced_after_reading_is_refused_by_name(tmp_path: Path) -> None:
    import cv2

    root, _ = make_root(tmp_path)
    ds = VOCDataset(root, "trainval")
    cv2.imwrite(str(ds[0].image_path), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(UserError, match=r"a\.jpg: decodes to 30 x 20, but was 64 x 48"):
        load_image(ds[0].image_path, (ds[0].width, ds[0].height))
