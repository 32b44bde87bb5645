"""train, compare and bench at the command line: a user error is one line, exit 2."""

import pytest
from typer.testing import CliRunner

from ohemcli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "compare", "bench"])
def test_bad_yaml_is_one_line_naming_the_file_and_writes_nothing(tmp_path, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iters: many\n")
    out = tmp_path / "out"
    args = [command, "--config", str(bad)] + (["--out", str(out)] if command != "bench" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "train.iters" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_unknown_sampler_is_rejected_by_the_option_parser():
    result = runner.invoke(app, ["train", "--sampler", "random"])
    assert result.exit_code == 2
    assert "--sampler" in result.stderr


def test_a_summary_without_a_map_prints_n_a_not_a_traceback(monkeypatch, tmp_path):
    import ohemcli.engine.train as engine_train

    summary = {"sampler": "fixed", "metric": "voc07", "mAP": None, "iters": 2}
    summary.update(train_seconds=1.0, mining_seconds=0.0, s_per_iter=0.5)
    monkeypatch.setattr(engine_train, "train", lambda cfg, out, resume=False: summary)
    result = runner.invoke(app, ["train", "--data", "synth", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "voc07 mAP n/a after 2 iterations" in result.stdout
