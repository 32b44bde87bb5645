"""``ohem compare`` evaluates at least 8 times by default, but a resumed folder keeps its count."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.launch.compare import COMPARE_EVAL_POINTS, compare_eval_points
from ohemcli.runs.paths import ComparePaths


def with_points(n: int) -> ExperimentConfig:
    cfg = ExperimentConfig()
    return replace(cfg, train=replace(cfg.train, eval_points=n))


def test_eval_points_default(tmp_path: Path) -> None:
    assert COMPARE_EVAL_POINTS >= 8
    assert (
        compare_eval_points(with_points(4), tmp_path, False).train.eval_points
        == COMPARE_EVAL_POINTS
    )
    assert compare_eval_points(with_points(12), tmp_path, False).train.eval_points == 12
    assert compare_eval_points(with_points(2), tmp_path, True).train.eval_points == 2  # given
    settings = {"samplers": ["fixed"], "seeds": [1], "config": config_to_dict(with_points(3))}
    ComparePaths(tmp_path).settings.write_text(yaml.safe_dump(settings))
    assert compare_eval_points(with_points(4), tmp_path, False).train.eval_points == 3  # resumed


def test_compare_builds_its_config_from_its_options_and_names_the_default_folder(
    tmp_path: Path, monkeypatch
) -> None:
    import ohemcli.launch.compare
    from ohemcli.cli import app
    from ohemcli.launch.grid import CompareOutcome

    seen = {}

    def fake_compare(cfg, samplers, seeds, out_dir, progress, launch):
        seen.update(cfg=cfg, samplers=samplers, seeds=seeds, out_dir=out_dir)
        return CompareOutcome(runs=[])

    monkeypatch.setattr(ohemcli.launch.compare, "compare", fake_compare)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myvoc").mkdir()
    args = ["compare", "--config", "cpu_tiny", "--data", "myvoc", "--seeds", "2,3"]
    result = CliRunner().invoke(app, [*args, "--samplers", "fixed,ohem", "--iters", "9"])
    assert result.exit_code == 0, result.output
    assert seen["out_dir"] == Path("runs") / "compare-myvoc"
    assert (seen["samplers"], seen["seeds"]) == (["fixed", "ohem"], [2, 3])
    cfg = seen["cfg"]
    assert cfg.data.root == str(tmp_path / "myvoc") and cfg.train.iters == 9
    assert cfg.train.eval_points == COMPARE_EVAL_POINTS  # cpu_tiny asks for fewer


def test_a_broken_compare_yaml_is_one_line_before_any_work(tmp_path: Path) -> None:
    from ohemcli.cli import app

    for text, said in (("[1, 2]\n", "not a compare settings file"), ("a: [\n", "invalid YAML")):
        ComparePaths(tmp_path).settings.write_text(text)
        done = CliRunner().invoke(app, ["compare", "--data", "synth", "--out", str(tmp_path)])
        assert done.exit_code == 2, done.output
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0] and "compare.yaml" in lines[0], done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.yaml"]
