"""ohem bench --eval-runs: test images/s of whole evaluations, the median of the runs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import ohemcli.data.splits
import ohemcli.engine.bench
import ohemcli.evaluation.evaluate
from ohemcli.engine.bench import evaluation_speed


def test_evaluation_speed_is_the_median_rate_of_whole_evaluations(small_config, monkeypatch):
    cfg = small_config()
    split = ohemcli.data.splits.SplitData(ohemcli.data.splits.open_split(cfg, "test"), {})
    monkeypatch.setattr(ohemcli.data.splits, "load_split", lambda *a, **k: split)
    written = []

    def fake_evaluate(model, c, s, device, out_dir, metric=None, show_progress=True):
        assert s is split and out_dir.is_dir()  # the files go to a real (temporary) folder
        written.append(out_dir)
        return {}

    monkeypatch.setattr(ohemcli.evaluation.evaluate, "evaluate_model", fake_evaluate)
    ticks = iter([0.0, 2.0, 10.0, 13.0, 20.0, 21.0])  # runs of 2 s, 3 s and 1 s
    monkeypatch.setattr(
        ohemcli.engine.bench, "time", SimpleNamespace(perf_counter=lambda: next(ticks))
    )
    speed = evaluation_speed(cfg, 3, show_progress=False)
    assert len(written) == 3 and len(set(written)) == 3
    # 6 test images in small_synth: 3, 2 and 6 images/s; the median is 3
    assert speed == {"images": 6, "runs": 3, "images_per_s": 3.0}


def test_bench_cli_adds_the_evaluation_figure_only_when_asked(monkeypatch):
    from typer.testing import CliRunner

    from ohemcli.cli.app import app

    asked = []
    monkeypatch.setattr(ohemcli.engine.bench, "bench_samplers", lambda *a, **k: [])

    def fake_speed(cfg, runs, show_progress=True):
        asked.append(runs)
        return {"images": 150, "runs": runs, "images_per_s": 12.5}

    monkeypatch.setattr(ohemcli.engine.bench, "evaluation_speed", fake_speed)
    runner = CliRunner()
    args = ["bench", "--config", "synth_tiny", "--iters", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [] and asked == []
    result = runner.invoke(app, [*args, "--eval-runs", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"evaluation": {"images": 150, "runs": 2, "images_per_s": 12.5}}
    ]
