"""TensorBoard event files: every metrics.jsonl and evals.jsonl value, read back with
TensorBoard's own reader; a resumed run's events agree with its logs; off by flag or key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ohemcli.cli.overrides import build_config
from ohemcli.engine.tensorboard import MAP_SECONDS_TAG, MAP_TAG, S_PER_ITER, TAGS, metric_scalars
from ohemcli.engine.train import Trainer, train


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _events(run: Path):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})  # 0: keep every value
    acc.Reload()
    return acc


def _series(acc, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_a_log_line_becomes_grouped_scalars() -> None:
    line = {"iter": 20, "lr": 0.01, "loss": 1.5, "step_time": 0.25, "data_time": 0.05,
            "iou_hist": [1] * 10, "hnm_pool_size": 7, "my_figure": 2.0,
            "p_top_bg": None}  # fmt: skip
    scalars = metric_scalars(line)
    assert scalars[S_PER_ITER] == pytest.approx(0.30)
    assert scalars["loss/total"] == 1.5 and scalars["train/lr"] == 0.01
    assert scalars["sampler/hnm_pool_size"] == 7.0
    assert scalars["other/my_figure"] == 2.0  # a plugin's own figure is not dropped
    # iter is the step, a histogram and a missing value are no scalar
    assert set(scalars) == {"train/lr", "loss/total", "time/step_s", "time/data_s",
                            "sampler/hnm_pool_size", "other/my_figure", S_PER_ITER}  # fmt: skip


def test_no_tensorboard_flag_turns_the_key_off() -> None:
    assert build_config("synth_tiny", {}).train.tensorboard is True
    assert build_config("synth_tiny", {"tensorboard": False}).train.tensorboard is False


@pytest.mark.slow
def test_event_files_hold_every_logged_value(tmp_path, small_config) -> None:
    run = tmp_path / "run"
    keys = {"sampler.name": "hnm", "sampler.mine_every": 4, "sampler.hnm_fp_thresh": 0.0,
            "train.iters": 20, "train.eval_points": 2}  # fmt: skip
    train(small_config(**keys), run, show_progress=False)
    acc = _events(run)
    tags = set(acc.Tags()["scalars"])
    wanted = {TAGS[k] for k in ("loss", "loss_cls", "loss_box", "lr", "fg_fraction", "p_true_fg",
                                "p_top_bg", "hnm_pool_size", "readonly_time")}  # fmt: skip
    assert wanted | {S_PER_ITER, MAP_TAG, MAP_SECONDS_TAG} <= tags
    log = _jsonl(run / "metrics.jsonl")
    assert [line["iter"] for line in log] == [5, 10, 15, 20]
    for key in ("loss", "loss_cls", "loss_box", "lr", "fg_fraction", "p_true_fg", "p_top_bg"):
        expect = [(line["iter"], pytest.approx(line[key], rel=1e-6)) for line in log]
        assert _series(acc, TAGS[key]) == expect, key
    pool = [(line["iter"], line["hnm_pool_size"]) for line in log if "hnm_pool_size" in line]
    assert pool and _series(acc, TAGS["hnm_pool_size"]) == pool
    per_iter = [line["step_time"] + line["data_time"] for line in log]
    assert [v for _, v in _series(acc, S_PER_ITER)] == pytest.approx(per_iter, rel=1e-6)
    evals = _jsonl(run / "evals.jsonl")
    assert [e["iter"] for e in evals] == [10, 20]  # the last one is the final evaluation
    assert _series(acc, MAP_TAG) == [(e["iter"], pytest.approx(e["mAP"], abs=1e-6)) for e in evals]


@pytest.mark.slow
def test_a_resumed_run_replaces_the_steps_after_its_checkpoint(
    tmp_path, small_config, monkeypatch
) -> None:
    from ohemcli.engine.step import NonFiniteLoss
    from ohemcli.model.fast_rcnn import FastRCNN
    from ohemcli.model.losses import RoILosses

    real, calls = FastRCNN.head_losses, []

    def nan_at_7(self, *args):
        losses = real(self, *args)
        calls.append(1)
        return RoILosses(losses.cls * float("nan"), losses.box) if len(calls) == 7 else losses

    run = tmp_path / "run"
    keys = {"train.iters": 10, "train.log_every": 2, "train.checkpoint_every": 5}
    with monkeypatch.context() as m:
        m.setattr(FastRCNN, "head_losses", nan_at_7)
        with pytest.raises(NonFiniteLoss):
            train(small_config(**keys), run, show_progress=False)
    crashed = _series(_events(run), TAGS["loss"])
    assert [s for s, _ in crashed] == [2, 4, 6]  # readable after the crash, iteration 6 included
    Trainer(small_config(**keys), run, resume=True, show_progress=False).run()
    log = _jsonl(run / "metrics.jsonl")
    # Iteration 6 was logged again after the checkpoint at 5: TensorBoard keeps only the new one.
    assert _series(_events(run), TAGS["loss"]) == [
        (line["iter"], pytest.approx(line["loss"], rel=1e-6)) for line in log
    ]
    assert [line["iter"] for line in log] == [2, 4, 6, 8, 10]


@pytest.mark.slow
def test_train_tensorboard_false_writes_no_event_files(tmp_path, small_config) -> None:
    run = tmp_path / "run"
    train(small_config(**{"train.iters": 5, "train.tensorboard": False}), run, show_progress=False)
    assert (run / "metrics.jsonl").is_file() and not (run / "tb").exists()


def test_event_files_on_or_off_is_the_same_setting() -> None:
    """A compare folder or a resume does not refuse a run for turning event files off."""
    from ohemcli.config import ExperimentConfig, config_to_dict
    from ohemcli.runs.settings import comparable_config, setting_hash

    on = config_to_dict(ExperimentConfig())
    off = json.loads(json.dumps(on))
    off["train"]["tensorboard"] = False
    assert comparable_config(on) == comparable_config(off)
    assert setting_hash(on) == setting_hash(off)
