"""Bad-input matrix, second table: values that read as rich markup, hostile JSON and YAML, and
edited run files (evals.jsonl, eval/metrics.json, summary.json) at the real command line.

The rows follow tests/cli/test_bad_input_matrix.py and reuse its helpers: one stderr line, exit 2,
no traceback, nothing changed in the workspace. They live in their own table so that they run
without the first table's rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_bad_input_matrix import (
    Case,
    _config,
    _report_edited,
    _summary_with,
    _yaml_text,
    run_rows,
)
from tests.helpers import tiny_voc_root


def _train_with(ws: Path, base: dict, *extra: str) -> Case:
    cfg = _config(ws, base["data"])
    return Case(["train", "--config", str(cfg), "--out", str(ws / "run"), *extra], "")


def data_with_markup(ws, base):
    case = _train_with(ws, base, "--data", str(ws / "[/x]"))
    return Case(case.args, "[/x]: data root does not exist")


def config_with_markup(ws, base):
    return Case(["train", "--config", str(ws / "[bold]x")], "/[bold]x' is neither")


def samplers_with_markup(ws, base):
    cfg = _config(ws, base["data"])
    args = ["compare", "--config", str(cfg), "--samplers", "fixed,[/x]", "--out", str(ws / "c")]
    return Case(args, "unknown [/x]")


def classes_with_markup(ws, base):
    dets = ws / "dets"
    dets.mkdir()
    args = ["eval", "--detections", str(dets), "--data", str(base["data"]), "--split", "test"]
    return Case([*args, "--classes", "thing,[/x]"], "[/x]")


def data_with_an_empty_part(ws, base):
    (ws / "a.json").write_text("{}")
    case = _train_with(ws, base, "--data", "a.json,")
    return Case(case.args, "--data: data.root = 'a.json,' is not allowed", cwd=ws)


def _write(name: str, text: str):
    def edit(run: Path) -> None:
        (run / name).write_text(text)

    return edit


def _metrics_json_with(**changes):
    def edit(run: Path) -> None:
        path = run / "eval" / "metrics.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | changes))

    return edit


def _without(key: str):
    def edit(run: Path) -> None:
        summary = json.loads((run / "summary.json").read_text())
        del summary[key]
        (run / "summary.json").write_text(json.dumps(summary))

    return edit


DEEP = "[" * 200_000 + "]" * 200_000

ROWS = {
    # 10: a value that reads as markup prints literally, never MarkupError
    "--data with [/x]": data_with_markup,
    "--config with [bold]": config_with_markup,
    "--samplers with [/x]": samplers_with_markup,
    "--classes with [/x]": classes_with_markup,
    # 11: JSON and YAML that parse but are hostile
    "summary with a 5000-digit integer": _report_edited(
        _write("summary.json", '{"mAP": 1' + "0" * 5000 + "}"), "summary.json: refused JSON"
    ),
    "summary with a 400-digit integer": _report_edited(
        _write("summary.json", '{"sampler": "hnm", "seed": 0, "mAP": 1' + "0" * 400 + "}"),
        "integer of 401 digits",
    ),
    "summary nested 200000 deep": _report_edited(
        _write("summary.json", DEEP), "summary.json: refused, JSON nested too deeply"
    ),
    "an evals line nested 200000 deep": _report_edited(
        _write("evals.jsonl", DEEP + "\n"), "evals.jsonl:1: not a JSON line"
    ),
    "yaml with a date out of range": _yaml_text(b"train:\n  iters: 2001-13-45\n", "c.yaml"),
    "config.yaml of a run with a date out of range": _report_edited(
        _write("config.yaml", "train:\n  iters: 2001-13-45\n"), "config.yaml: not valid YAML"
    ),
    # 15: an evals.jsonl whose iter is no number
    "evals iter a string": _report_edited(
        _write("evals.jsonl", '{"iter": "2", "mAP": 0.1}\n'), "evals.jsonl:1: iter = '2'"
    ),
    "evals iter a list": _report_edited(
        _write("evals.jsonl", '{"iter": [2], "mAP": 0.1}\n'), "evals.jsonl:1: iter = [2]"
    ),
    # 16: eval/metrics.json with a malformed coco entry
    "metrics.json coco a string": _report_edited(
        _metrics_json_with(coco="x"), "metrics.json: coco = 'x' is not a mapping"
    ),
    "metrics.json coco AP a string": _report_edited(
        _metrics_json_with(coco={"AP": "0.5"}), "coco.AP = '0.5' is not a number"
    ),
    "metrics.json metrics.coco a list": _report_edited(
        _metrics_json_with(metrics={"coco": [1]}), "metrics.coco = [1] is not a mapping"
    ),
    # 21: a summary that does not say which run it is, or says another
    "summary without seed": _report_edited(_without("seed"), "summary.json: no seed"),
    "summary without sampler": _report_edited(_without("sampler"), "summary.json: no sampler"),
    "summary sampler edited": _report_edited(
        _summary_with(sampler="ohem"), "sampler = 'ohem', but"
    ),
    "summary seed edited": _report_edited(_summary_with(seed=7), "seed = 7, but"),
    "--data with an empty part": data_with_an_empty_part,
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every row, two at a time; name -> (case, completed process, before, after)."""
    from ohemcli.config import load_config
    from ohemcli.engine.train import train

    tmp = tmp_path_factory.mktemp("matrix_text")
    data = tiny_voc_root(tmp, num_images=4)
    run = tmp / "finished"
    train(load_config(_config(tmp, data, **{"sampler.name": "hnm"})), run, show_progress=False)
    return run_rows(ROWS, tmp, {"data": data, "run": run})


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ROWS))
def test_bad_text_is_one_line_exit_2_and_changes_nothing(results, name):
    case, proc, before, after = results[name]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(lines) == 1, proc.stderr
    assert case.expect in lines[0], lines[0]
    assert len(lines[0]) < 600
    assert before == after
