"""The VOC reader on the real data in ../shared/data, and on small broken roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError
from tests.conftest import shared_root
from tests.data.bad_voc import REFUSED, make_root

BAD_ROOTS = REFUSED


def test_voc100_counts() -> None:
    ds = VOCDataset(shared_root("voc100"), "trainval")
    assert len(ds) == 100
    assert ds.num_objects == 273
    assert sum(int(r.difficult.sum()) for r in ds.records) == 38
    assert ds.dropped == []


def test_bccd_classes_and_degenerate_boxes() -> None:
    ds = VOCDataset(shared_root("bccd"), "trainval")
    assert len(ds) == 292
    assert ds.classes == ("Platelets", "RBC", "WBC")
    assert ds.num_objects == 3943
    assert sum(len(r.boxes) for r in ds.records) == 3941
    assert len(ds.dropped) == 2
    assert "BloodImage_00338.xml" in ds.dropped[0]
    assert "BloodImage_00343.xml" in ds.dropped[1]


def test_coordinates_are_shifted_to_zero_based() -> None:
    # BloodImage_00338.xml, first object: <xmin>453 <ymin>81 <xmax>555 <ymax>182 (1-based).
    ds = VOCDataset(shared_root("bccd"), "trainval")
    record = next(r for r in ds.records if r.image_id == "BloodImage_00338")
    np.testing.assert_array_equal(record.boxes[0], [452, 80, 554, 181])
    assert record.boxes.dtype == np.float32
    assert ds.classes[record.labels[0] - 1] == "RBC"
    # voc100 2007_000027.xml: person 174 101 349 351.
    voc = VOCDataset(shared_root("voc100"), "trainval")
    person = next(r for r in voc.records if r.image_id == "2007_000027")
    np.testing.assert_array_equal(person.boxes, [[173, 100, 348, 350]])


def test_good_tiny_root_reads(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path)
    ds = VOCDataset(root, "trainval")
    assert ds.classes == ("blob",)
    np.testing.assert_array_equal(ds[0].boxes, [[0, 1, 29, 39]])


@pytest.mark.parametrize("case", sorted(BAD_ROOTS))
def test_bad_input_is_a_user_error_naming_the_path(tmp_path: Path, case: str) -> None:
    root, culprit = BAD_ROOTS[case](tmp_path)
    with pytest.raises(UserError) as info:
        VOCDataset(root, "trainval")
    assert str(culprit) in str(info.value)


def _snapshot(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", sorted(BAD_ROOTS))
def test_bad_input_through_the_cli(tmp_path: Path, case: str) -> None:
    root, culprit = BAD_ROOTS[case](tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(app, ["data", "stats", "--data", str(root), "--split", "trainval"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(culprit) in lines[0]
    assert result.stdout == ""
    assert _snapshot(tmp_path) == before
