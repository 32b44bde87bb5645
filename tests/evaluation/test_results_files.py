"""Devkit results files: round trip, 1-based on disk, and errors that name file:line."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from ohemcli.errors import UserError
from ohemcli.evaluation.results_files import (
    ClassDetections,
    empty_detections,
    read_results_files,
    write_results_files,
)

IDS = {"000001", "000002"}


def _sample() -> dict[str, ClassDetections]:
    return {
        "cat": ClassDetections(
            ["000002", "000001"],
            [0.123456789012345, 0.9],
            [[0.0, 1.5, 10.25, 20.0], [3.0, 4.0, 5.0, 6.0]],
        ),
        "dog": ClassDetections(),
    }


def test_round_trip_keeps_every_number_and_writes_one_based(tmp_path):
    paths = write_results_files(_sample(), tmp_path, "test")
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt"]
    # On disk the first box [0, 1.5, 10.25, 20] is 1-based: [1, 2.5, 11.25, 21].
    first = (tmp_path / "comp4_det_test_cat.txt").read_text().splitlines()[0].split()
    assert first[0] == "000002"
    assert float(first[1]) == 0.123456789012345  # full precision, so ties survive
    assert [float(v) for v in first[2:]] == [1.0, 2.5, 11.25, 21.0]
    assert (tmp_path / "comp4_det_test_dog.txt").read_text() == ""

    back = read_results_files(tmp_path, "test", ["cat", "dog", "bird"], IDS)
    assert back["cat"].image_ids == ["000002", "000001"]
    np.testing.assert_array_equal(back["cat"].scores, _sample()["cat"].scores)
    np.testing.assert_array_equal(back["cat"].boxes, _sample()["cat"].boxes)
    assert len(back["dog"]) == 0 and len(back["bird"]) == 0  # no file: no detections


def test_any_prefix_is_read(tmp_path):
    (tmp_path / "comp3_det_val_cat.txt").write_text("000001 0.5 1 1 10 10\n")
    back = read_results_files(tmp_path, "val", ["cat"], IDS)
    assert back["cat"].boxes.tolist() == [[0.0, 0.0, 9.0, 9.0]]  # 1-based on disk, 0-based here


@pytest.mark.parametrize(
    "line",
    ["000001 0.5 1 1 10", "000001 high 1 1 10 10", "000001 nan 1 1 10 10", "000001 0.5 9 1 2 10"],
)
def test_malformed_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_text(f"000002 0.9 1 1 10 10\n\n{line}\n")  # the bad line is line 3
    with pytest.raises(UserError, match=re.escape(f"{path}:3:")):
        read_results_files(tmp_path, "test", ["cat"], IDS)


def test_unknown_image_id_names_file_line_and_id(tmp_path):
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_text("000001 0.9 1 1 10 10\n999999 0.9 1 1 10 10\n")
    with pytest.raises(UserError, match=re.escape(f"{path}:2: image id '999999'")):
        read_results_files(tmp_path, "test", ["cat"], IDS)


def test_file_for_unknown_class_is_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "comp4_det_test_cat.txt").write_text("000001 0.9 1 1 10 10\n")
    (tmp_path / "comp4_det_test_zebra.txt").write_text("000001 0.9 1 1 10 10\n")
    logger = logging.getLogger("ohemcli")
    logger.addHandler(caplog.handler)  # the CLI may have set propagate=False on this logger
    try:
        back = read_results_files(tmp_path, "test", ["cat"], IDS)
    finally:
        logger.removeHandler(caplog.handler)
    assert set(back) == {"cat"}
    assert any("comp4_det_test_zebra.txt" in r.getMessage() for r in caplog.records)


def test_no_results_files_names_the_folder(tmp_path):
    (tmp_path / "comp4_det_train_cat.txt").write_text("")  # another split does not count
    with pytest.raises(UserError, match=re.escape(str(tmp_path))):
        read_results_files(tmp_path, "test", ["cat"], IDS)
    with pytest.raises(UserError, match="does not exist"):
        read_results_files(tmp_path / "nope", "test", ["cat"], IDS)


def test_two_files_for_one_class_is_an_error(tmp_path):
    (tmp_path / "comp3_det_test_cat.txt").write_text("")
    (tmp_path / "comp4_det_test_cat.txt").write_text("")
    with pytest.raises(UserError, match="second results file for class 'cat'"):
        read_results_files(tmp_path, "test", ["cat"], IDS)


def test_class_name_with_underscore_is_not_confused(tmp_path):
    (tmp_path / "comp4_det_test_red_cell.txt").write_text("000001 0.9 1 1 10 10\n")
    back = read_results_files(tmp_path, "test", ["cell", "red_cell"], IDS)
    assert (len(back["red_cell"]), len(back["cell"])) == (1, 0)


def test_empty_detections_and_shape_check():
    assert set(empty_detections(["a", "b"])) == {"a", "b"}
    with pytest.raises(ValueError, match="as many"):
        ClassDetections(["x"], [0.5, 0.6], [[0, 0, 1, 1]])
