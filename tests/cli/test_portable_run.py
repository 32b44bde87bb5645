"""A run trained from one folder is evaluated from another, through the real CLI (issue 12).

Both commands run with stderr piped (not a terminal), so this is also the end-to-end check of the
plain progress lines: no bar redrawn with carriage returns or cursor codes, and the results on
stdout are exactly one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ohemcli.config import config_to_dict

REPO = Path(__file__).resolve().parents[2]


def _ohem(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "ohemcli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def _assert_plain(stderr: str) -> None:
    assert "\r" not in stderr and "\x1b[" not in stderr, stderr
    assert "" not in stderr.splitlines()  # no blank lines
    assert any(line.endswith("start") for line in stderr.splitlines()), stderr


@pytest.mark.slow
def test_eval_of_a_run_works_from_another_folder(tmp_path, small_synth, small_config):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(small_synth, project / "voc")
    raw = config_to_dict(small_config(**{"train.iters": 2, "train.lr_steps": []}))
    raw["data"]["root"] = "voc"  # relative to where `ohem train` runs
    (project / "cfg.yaml").write_text(yaml.safe_dump(raw))

    trained = _ohem(["train", "--config", "cfg.yaml", "--out", "run", "--json"], project)
    assert trained.returncode == 0, trained.stderr
    _assert_plain(trained.stderr)
    train_map = json.loads(trained.stdout)["mAP"]

    run = os.path.relpath(project / "run", elsewhere)
    evaluated = _ohem(["eval", run, "--json"], elsewhere)
    assert evaluated.returncode == 0, evaluated.stderr
    _assert_plain(evaluated.stderr)
    result = json.loads(evaluated.stdout)  # stdout holds the one JSON object and nothing else
    assert result["num_images"] == 6
    assert result["mAP"] == pytest.approx(train_map)  # same checkpoint, same test images
    assert (project / "run" / "eval-test-default-voc07" / "metrics.json").is_file()  # beside eval/
    assert not (elsewhere / "run").exists()
