"""``ohem compare`` evaluates at least 8 times by default, but a resumed folder keeps its count."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from ohemcli.cli.compare import COMPARE_EVAL_POINTS, _eval_points
from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.runs.paths import ComparePaths


def with_points(n: int) -> ExperimentConfig:
    cfg = ExperimentConfig()
    return replace(cfg, train=replace(cfg.train, eval_points=n))


def test_eval_points_default(tmp_path: Path) -> None:
    assert COMPARE_EVAL_POINTS >= 8
    assert _eval_points(with_points(4), None, tmp_path).train.eval_points == COMPARE_EVAL_POINTS
    assert _eval_points(with_points(12), None, tmp_path).train.eval_points == 12
    assert _eval_points(with_points(2), 2, tmp_path).train.eval_points == 2  # given: kept
    settings = {"samplers": ["fixed"], "seeds": [1], "config": config_to_dict(with_points(3))}
    ComparePaths(tmp_path).settings.write_text(yaml.safe_dump(settings))
    assert _eval_points(with_points(4), None, tmp_path).train.eval_points == 3  # resumed folder
