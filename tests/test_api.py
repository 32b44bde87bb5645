"""The Python API gives the runs and files that the command line gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ohemcli import api
from ohemcli.cli import app
from ohemcli.config import config_to_dict
from ohemcli.report.analysis import to_json


def _files(folder: Path) -> set[str]:
    """The files of a compare folder, relative; submitit's and lock files aside, and a
    TensorBoard event file by its folder (its name holds the time and the process id)."""
    return {
        str(p.parent.relative_to(folder) / "events") if p.parent.name == "tb" else
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and ".submitit" not in p.parts and not p.name.endswith(".lock")
    }  # fmt: skip


@pytest.mark.slow
def test_a_python_compare_gives_the_clis_summary_and_files(tmp_path, small_config):
    cfg = small_config(**{"train.iters": 4, "train.lr_steps": [], "train.checkpoint_every": 4})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    by_cli, by_api = tmp_path / "cli", tmp_path / "api"
    args = ["compare", "--config", str(path), "--samplers", "fixed,ohem", "--seeds", "1"]
    args += ["--set", "train.eval_points=2", "--bootstrap", "0", "--no-progress", "--json"]
    result = CliRunner().invoke(app, [*args, "--out", str(by_cli)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)

    done = api.compare(
        path, ["fixed", "ohem"], [1], by_api, overrides={"train.eval_points": 2}, bootstrap=0
    )
    assert done.failures == [] and done.analysis is not None
    from_api = json.loads(to_json(done.analysis))
    maps = {row["sampler"]: row["mAP"] for row in from_api["samplers"]}
    assert maps == {row["sampler"]: row["mAP"] for row in printed["samplers"]}
    assert set(maps) == {"fixed", "ohem"} and all(m is not None for m in maps.values())
    assert _files(by_api) == _files(by_cli)
    assert {"report.md", "summary.csv", "pairs.csv", "results.csv"} <= _files(by_api)
    for run in ("fixed-s1", "ohem-s1"):  # the same runs: same config, same final mAP
        cli_run, api_run = by_cli / "runs" / run, by_api / "runs" / run
        assert (cli_run / "config.yaml").read_text() == (api_run / "config.yaml").read_text()
        m_cli = json.loads((cli_run / "summary.json").read_text())["mAP"]
        assert json.loads((api_run / "summary.json").read_text())["mAP"] == m_cli
