"""COCO sets at the command line: ``ohem data convert`` both ways, ``ohem eval --detections`` on a
COCO results json, ``ohem data stats``, and a Roboflow-layout folder trained end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.data.splits import open_dataset
from ohemcli.evaluation.coco_results import write_coco_results
from ohemcli.evaluation.results_files import ClassDetections, write_results_files
from tests.data.coco_sets import coco_doc, coco_layout, roboflow_layout
from tests.helpers import tiny_voc_root

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    """Selective search in this process: spawning a pool of workers costs seconds."""
    monkeypatch.setattr("ohemcli.data.proposals.load.available_cpus", lambda: 1)


def test_convert_voc_to_coco_and_back_keeps_every_box(tmp_path: Path):
    voc = tiny_voc_root(tmp_path, num_images=3, classes=("a", "b"))
    out = tmp_path / "coco"
    result = runner.invoke(
        app, ["data", "convert", "--data", str(voc), "--to", "coco", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "annotations" / "instances_test.json").read_text())
    # VOC's 1-based (11, 11)-(30, 30) is 0-based (10, 10)-(29, 29): COCO [10, 10, 19, 19]
    assert doc["annotations"][0]["bbox"] == [10.0, 10.0, 19.0, 19.0]
    assert [c["name"] for c in doc["categories"]] == ["a", "b"]
    assert sorted(p.name for p in (out / "test").iterdir()) == [
        "im000.jpg",
        "im001.jpg",
        "im002.jpg",
    ]
    back = tmp_path / "voc2"
    result = runner.invoke(
        app, ["data", "convert", "--data", str(out), "--to", "voc", "--out", str(back)]
    )
    assert result.exit_code == 0, result.output
    for split in ("trainval", "test"):
        a, b = open_dataset(str(voc), split), open_dataset(str(back), split)
        assert [r.image_id for r in a.records] == [r.image_id for r in b.records]
        for ra, rb in zip(a.records, b.records, strict=True):
            np.testing.assert_array_equal(ra.boxes, rb.boxes)
            np.testing.assert_array_equal(ra.labels, rb.labels)


def test_convert_refuses_an_existing_folder_and_leaves_nothing_when_interrupted(
    tmp_path: Path, monkeypatch
):
    voc = tiny_voc_root(tmp_path, num_images=3)
    (tmp_path / "taken").mkdir()
    result = runner.invoke(
        app,
        ["data", "convert", "--data", str(voc), "--to", "coco", "--out", str(tmp_path / "taken")],
    )
    assert result.exit_code == 2 and "already exists" in result.stderr
    copies = []

    def copy_then_fail(src, dst):
        if copies:
            raise KeyboardInterrupt
        copies.append(dst)
        return shutil.copyfile(src, dst)

    monkeypatch.setattr("ohemcli.data.convert.shutil.copy2", copy_then_fail)
    before = sorted(p.name for p in tmp_path.iterdir())
    runner.invoke(
        app, ["data", "convert", "--data", str(voc), "--to", "coco", "--out", str(tmp_path / "new")]
    )
    assert copies and sorted(p.name for p in tmp_path.iterdir()) == before  # no DST, no temp


def test_convert_to_voc_keeps_two_splits_images_of_one_name_and_size_apart(tmp_path: Path):
    """Two splits each hold img1.jpg, byte for byte alike, with other boxes: they are two images
    of the VOC root, each split keeps its own boxes and no image leaks into the other split."""
    train = coco_doc(1, boxes={1: [(5, [8.0, 8.0, 16.0, 16.0])]})
    test = coco_doc(1, boxes={1: [(5, [20.0, 4.0, 10.0, 12.0])]})
    root = coco_layout(tmp_path / "c", {"train": train, "test": test})
    assert (root / "train" / "img1.jpg").read_bytes() == (root / "test" / "img1.jpg").read_bytes()
    back = tmp_path / "voc"
    result = runner.invoke(
        app, ["data", "convert", "--data", str(root), "--to", "voc", "--out", str(back)]
    )
    assert result.exit_code == 0, result.output
    splits = {s: open_dataset(str(back), s) for s in ("train", "test")}
    ids = {s: [r.image_id for r in d.records] for s, d in splits.items()}
    assert len(ids["train"]) == len(ids["test"]) == 1 and ids["train"] != ids["test"]
    # 0-based x1 y1 x2 y2 of each split's own box
    np.testing.assert_array_equal(splits["train"].records[0].boxes, [[8, 8, 24, 24]])
    np.testing.assert_array_equal(splits["test"].records[0].boxes, [[20, 4, 30, 16]])


def test_convert_cleans_its_temporary_folder_on_sigterm_and_after_a_kill_9(tmp_path: Path):
    """SIGTERM runs the same cleanup as Ctrl-C; a folder left by a killed conversion (its pid no
    longer running) is removed by the next conversion into the same parent."""
    import os
    import signal
    import subprocess
    import sys

    from ohemcli.data.convert import OWNER_FILE, TEMP_SUFFIX, convert

    voc = tiny_voc_root(tmp_path, num_images=3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".old.abc{TEMP_SUFFIX}"
    stale.mkdir()
    (stale / OWNER_FILE).write_text(dead.stdout)
    live = tmp_path / f".busy.abc{TEMP_SUFFIX}"
    live.mkdir()
    (live / OWNER_FILE).write_text(f"{os.getpid()}\n")
    convert(str(voc), "coco", tmp_path / "coco")
    assert not stale.exists() and live.is_dir()  # the live one is another conversion's
    live_files = sorted(p.name for p in tmp_path.iterdir())
    code = (
        "import os, signal, shutil, sys\n"
        "from ohemcli.data import convert as c\n"
        "real = shutil.copy2\n"
        "def copy(src, dst):\n"
        "    real(src, dst)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "c.shutil.copy2 = copy\n"
        f"c.convert({str(voc)!r}, 'coco', c.Path({str(tmp_path / 'new')!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == live_files  # no DST, no temp


def test_eval_reads_a_coco_results_json_as_it_reads_devkit_files(tmp_path: Path):
    cats = [(12, "a"), (3, "b")]  # by id: b is label 1 (id 3), a label 2 (id 12)
    boxes = {1: [(12, [8.0, 8.0, 16.0, 16.0])], 2: [(3, [8.0, 8.0, 16.0, 16.0])]}
    root = coco_layout(tmp_path / "c", {"t": coco_doc(2, cats, boxes)})
    dataset = open_dataset(str(root), "t")
    dets = {
        # a: a false positive ranked above the true one -> precision 1/2 at recall 1: AP 0.5
        "a": ClassDetections(["1", "1"], [0.9, 0.8], [[30, 0, 40, 10], [8, 8, 24, 24]]),
        "b": ClassDetections(["2"], [0.7], [[8, 8, 24, 24]]),  # AP 1
    }
    write_coco_results(dets, dataset, tmp_path / "dets.json")
    written = json.loads((tmp_path / "dets.json").read_text())
    assert {(d["image_id"], d["category_id"]) for d in written} == {(1, 12), (2, 3)}
    assert written[0]["bbox"] == [8.0, 8.0, 16.0, 16.0]  # b first: label order
    write_results_files(dets, tmp_path / "files", "t")
    common = ["eval", "--data", str(root), "--split", "t", "--json"]
    from_json = runner.invoke(app, [*common, "--detections", str(tmp_path / "dets.json")])
    from_files = runner.invoke(app, [*common, "--detections", str(tmp_path / "files")])
    assert from_json.exit_code == 0, from_json.output
    a, b = json.loads(from_json.stdout), json.loads(from_files.stdout)
    assert a["AP"] == b["AP"] == {"b": 1.0, "a": 0.5} and a["mAP"] == 0.75
    written[0]["category_id"] = 4
    (tmp_path / "bad.json").write_text(json.dumps(written))
    bad = runner.invoke(app, [*common, "--detections", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "bad.json: [0].category_id 4 is not a category" in bad.stderr


def test_stats_states_the_category_mapping(tmp_path: Path):
    root = coco_layout(
        tmp_path / "c",
        {"val2017": coco_doc(2, [(9, "z"), (4, "y")], {1: [(9, [1.0, 1.0, 9.0, 9.0])]})},
    )
    result = runner.invoke(app, ["data", "stats", "--data", str(root), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["split"] == "val2017" and stats["images"] == 2  # a test split skips none
    assert stats["labels"] == {
        "1": {"name": "y", "category_id": 4},
        "2": {"name": "z", "category_id": 9},
    }
    text = runner.invoke(app, ["data", "stats", "--data", str(root), "--split", "val2017"])
    assert "4 -> 1 (y), 9 -> 2 (z)" in text.stdout.replace("\n", " ")


@pytest.mark.slow  # `ohem train` through the runner: the conftest cannot see that it trains
def test_a_roboflow_folder_trains_and_evaluates_end_to_end(tmp_path: Path):
    doc = coco_doc(
        3, [(0, "cells"), (1, "rbc")], {i: [(1, [8.0, 8.0, 16.0, 16.0])] for i in (1, 2, 3)}
    )
    root = roboflow_layout(
        tmp_path / "export",
        {
            "train": doc,
            "valid": coco_doc(
                2,
                [(0, "cells"), (1, "rbc")],
                {1: [(1, [8.0, 8.0, 16.0, 16.0])], 2: [(1, [8.0, 8.0, 16.0, 16.0])]},
            ),
        },
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "root": str(root),
                    "scale": 40,
                    "max_size": 48,
                    "max_proposals": 30,
                    "workers": 0,
                },
                "model": {"backbone": "tiny", "head_dim": 16},
                "sampler": {"batch_rois": 8},
                "train": {
                    "iters": 2,
                    "lr_steps": [],
                    "log_every": 1,
                    "checkpoint_every": 2,
                    "eval_points": 0,
                },
                "eval": {"metric": "all"},
            }
        )
    )
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 2  # the valid split, as there is no test split
    assert (
        set(metrics["AP"]) == {"cells", "rbc"}
        and metrics["metrics"]["coco"]["coco"]["AP"] is not None
    )
    dets = json.loads((run / "eval" / "detections_coco.json").read_text())
    assert dets and {d["category_id"] for d in dets} <= {0, 1}
    again = runner.invoke(
        app,
        [
            "eval",
            "--detections",
            str(run / "eval" / "detections_coco.json"),
            "--data",
            str(root),
            "--json",
        ],
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["mAP"] == metrics["mAP"]


@pytest.mark.parametrize("field", ["image_id", "category_id"])
@pytest.mark.parametrize("value", [[1], {"a": 1}])
def test_eval_refuses_a_list_or_dict_id_in_a_results_json(tmp_path: Path, field, value):
    root = coco_layout(tmp_path / "c", {"t": coco_doc(2)})
    entry = {"image_id": 1, "category_id": 5, "bbox": [8, 8, 16, 16], "score": 0.9}
    (tmp_path / "d.json").write_text(json.dumps([entry | {field: value}]))
    args = ["eval", "--data", str(root), "--split", "t", "--detections", str(tmp_path / "d.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"d.json: [0].{field} {value!r} is not" in lines[0], lines
