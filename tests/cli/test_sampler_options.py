"""Sampler options at the command line reach the config keys of the samplers."""

import pytest
from typer.testing import CliRunner

from ohemcli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "compare", "bench"])
def test_ohem_nms_scope_is_an_option_with_two_choices(command):
    assert "--ohem-nms-scope" in runner.invoke(app, [command, "--help"]).output
    result = runner.invoke(app, [command, "--ohem-nms-scope", "class"])
    assert result.exit_code == 2
    assert "--ohem-nms-scope" in result.stderr and "Traceback" not in result.output


def test_ohem_nms_scope_reaches_the_config(monkeypatch, tmp_path):
    import ohemcli.engine.train

    seen = {}

    def fake_train(cfg, out, resume=False):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(ohemcli.engine.train, "train", fake_train)
    args = ["train", "--sampler", "ohem", "--out", str(tmp_path / "run")]
    assert runner.invoke(app, [*args, "--ohem-nms-scope", "image"]).exit_code == 0
    assert seen["cfg"].sampler.ohem_nms_scope == "image"
    assert runner.invoke(app, args).exit_code == 0
    assert seen["cfg"].sampler.ohem_nms_scope == "label"  # the default: the release's NMS
