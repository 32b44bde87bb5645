"""Bad COCO json at ``ohem train``: one stderr line naming the file, exit 2, nothing written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ohemcli.cli import app
from tests.data.coco_sets import coco_doc, roboflow_layout

runner = CliRunner()


def _missing_images(doc: dict[str, Any]) -> None:
    del doc["images"]


def _string_id(doc: dict[str, Any]) -> None:
    doc["images"][0]["id"] = "1"


def _unknown_category(doc: dict[str, Any]) -> None:
    doc["annotations"][1]["category_id"] = 99


def _missing_image(doc: dict[str, Any]) -> None:
    doc["annotations"][1]["image_id"] = 9


def _image_twice(doc: dict[str, Any]) -> None:
    doc["images"].append(copy.deepcopy(doc["images"][0]))


def _climbing_file_name(doc: dict[str, Any]) -> None:
    doc["images"][1]["file_name"] = "../../secret.jpg"


def _string_bbox(doc: dict[str, Any]) -> None:
    doc["annotations"][0]["bbox"] = ["8", "8", "16", "16"]


def _no_annotations(doc: dict[str, Any]) -> None:
    doc["annotations"] = []


def _category(name: str):
    def spoil(doc: dict[str, Any]) -> None:
        doc["categories"][0]["name"] = name

    spoil.__name__ = f"_category_{name.encode('unicode_escape').decode()[:16]}"
    return spoil


# A category name becomes part of a results file's name and of converted VOC XML: each of these
# passed the checks and failed only after training (or wrote XML we cannot read back).
_CATEGORY_CASES = [
    (_category("a\ud800b"), "holds a lone surrogate"),
    (_category("字" * 150), "longer than 200 bytes in UTF-8"),  # 150 characters, 450 bytes
    (_category("a\ufffeb"), "XML cannot hold"),
    (_category("[bold]cross/x"), "'[bold]cross/x' holds a path separator"),  # markup, literally
    (_category("[/x]/y"), "'[/x]/y' holds a path separator"),
]

CASES = [
    (_missing_images, "missing key 'images'"),
    (_string_id, "images[0].id is '1', not an integer"),
    (_unknown_category, "annotations[1]: category_id 99 is not in 'categories'"),
    (_missing_image, "annotations[1]: image_id 9 is not in 'images'"),
    (_image_twice, "images[2]: image id 1 listed twice"),
    (_climbing_file_name, "file_name '../../secret.jpg'"),
    (_string_bbox, "annotations[0].bbox is '8', not a number"),
    (_no_annotations, "'annotations' is empty"),
    *_CATEGORY_CASES,
]


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


@pytest.mark.parametrize("spoil, expect", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_a_bad_json_is_one_line_exit_2_and_nothing_written(tmp_path: Path, spoil, expect):
    doc = coco_doc(2)
    spoil(doc)
    root = roboflow_layout(tmp_path / "set", {"train": doc, "test": coco_doc(2)})
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(root), "scale": 40, "max_size": 48, "workers": 0},
                "model": {"backbone": "tiny", "head_dim": 16},
                "train": {"iters": 1, "lr_steps": []},
            }
        )
    )
    before = _snapshot(tmp_path)
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "run")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and expect in lines[0], lines
    assert str(root / "train" / "_annotations.coco.json") in lines[0]
    assert "Traceback" not in result.output
    assert _snapshot(tmp_path) == before  # no run folder, no cache, nothing else
