"""The training loop: loss falls, checkpoints round-trip, resume matches a straight run."""

import json

import pytest
import torch

from ohemcli.engine.train import Trainer, train
from ohemcli.errors import UserError
from ohemcli.runs.checkpointer import load_checkpoint

pytestmark = pytest.mark.slow


def _log(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sampler", ["fixed", "hnm", "ohem"])
def test_short_run_lowers_the_loss_and_writes_the_run_folder(tmp_path, small_config, sampler):
    run = tmp_path / sampler
    summary = train(
        small_config(**{"sampler.name": sampler, "sampler.mine_every": 10}),
        run,
        show_progress=False,
    )
    log = _log(run)
    assert len(log) == 6  # one line per 5 iterations
    assert log[-1]["loss"] < log[0]["loss"]
    expected = {
        "iter",
        "loss",
        "loss_cls",
        "loss_box",
        "lr",
        "step_time",
        "data_time",
        "fg_fraction",
    }
    assert expected <= set(log[0])
    if sampler == "ohem":
        # ohem trains on the hardest RoIs: their loss exceeds the average RoI's.
        assert all(line["mean_loss_chosen"] > line["mean_loss_all"] for line in log)
    for name in ("config.yaml", "checkpoint.pt", "summary.json", "eval/metrics.json"):
        assert (run / name).is_file(), name
    assert summary["iters"] == 30
    assert 0.0 <= summary["mAP"] <= 1.0
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["devices"] == [f"cpu ({torch.get_num_threads()} threads)"]
    assert summary["concurrent_runs"] == 1  # alone on the test session's private registry
    if sampler == "hnm":
        assert summary["mining_passes"] == 2  # after iterations 10 and 20, not after the last
        assert summary["mining_seconds"] > 0
        # The line logged after each pass (iterations 15 and 25) carries the pool's size.
        sizes = {line["iter"]: line["hnm_pool_size"] for line in log if "hnm_pool_size" in line}
        assert list(sizes) == [15, 25] and all(isinstance(v, int) for v in sizes.values())
        pool = load_checkpoint(run / "checkpoint.pt")["sampler"]["pool"]
        assert sizes[25] == sum(len(v["index"]) for v in pool.values())
    else:
        assert summary["mining_seconds"] == 0


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, small_config):
    hnm = {
        "sampler.name": "hnm",
        "sampler.mine_every": 4,
        "sampler.hnm_fp_thresh": 0.0,
    }  # 0: every background RoI qualifies
    cfg = small_config(**hnm, **{"train.iters": 10})
    train(cfg, tmp_path / "straight", show_progress=False)
    short = small_config(**hnm, **{"train.iters": 6})
    train(short, tmp_path / "resumed", show_progress=False)
    saved_pool = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["sampler"]["pool"]
    assert saved_pool, "the mining pass after iteration 4 should have pooled false positives"
    trainer = Trainer(cfg, tmp_path / "resumed", resume=True, show_progress=False)
    assert trainer.state.iteration == 6
    restored = trainer.sampler.state_dict()["pool"]
    assert restored.keys() == saved_pool.keys()
    for key in saved_pool:
        assert torch.equal(restored[key]["index"], saved_pool[key]["index"])
    trainer.run()
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    # hnm accumulates by default: the second pass merged into the restored pool, as straight did.
    pools = straight["sampler"]["pool"], resumed["sampler"]["pool"]
    assert pools[0].keys() == pools[1].keys()
    for key in pools[0]:
        assert torch.equal(pools[0][key]["index"], pools[1][key]["index"])
    a, b = straight["model"], resumed["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_checkpoint_round_trip_reproduces_the_runs_map(tmp_path, small_config):
    from ohemcli.evaluation.evaluate import evaluate_run

    run = tmp_path / "run"
    summary = train(small_config(**{"train.iters": 8}), run, show_progress=False)
    state = load_checkpoint(run / "checkpoint.pt")
    assert {
        "model",
        "optimizer",
        "scheduler",
        "sampler",
        "rng",
        "state",
        "config",
        "classes",
    } <= set(state)
    assert state["state"]["iteration"] == 8
    again = evaluate_run(run, "test", "voc07", device="cpu", show_progress=False)
    assert again["mAP"] == pytest.approx(summary["mAP"], abs=1e-9)


def test_existing_run_is_not_clobbered(tmp_path, small_config):
    run = tmp_path / "run"
    train(small_config(**{"train.iters": 2}), run, show_progress=False)
    with pytest.raises(UserError, match="--resume"):
        train(small_config(**{"train.iters": 2}), run, show_progress=False)
    with pytest.raises(UserError, match=r"saved with train.lr = 0.01, this run has 0.5"):
        train(
            small_config(**{"train.iters": 4, "train.lr": 0.5}),
            run,
            resume=True,
            show_progress=False,
        )


def test_callback_gets_every_logged_record(tmp_path, small_config):
    run = tmp_path / "run"
    records = []
    train(
        small_config(**{"train.iters": 4, "train.log_every": 2}),
        run,
        show_progress=False,
        callback=records.append,
    )
    metrics = [r for r in records if r["kind"] == "metrics"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(metrics) + len(evals) == len(records)
    assert [{k: v for k, v in r.items() if k != "kind"} for r in metrics] == _log(run)
    saved = [json.loads(x) for x in (run / "evals.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "kind"} for r in evals] == saved
    assert [r["iter"] for r in metrics] == [2, 4] and [r["iter"] for r in evals] == [4]
    for line in metrics:  # fixed: bg from [bg_lo 0.1, 0.5), fg from [fg_thresh 0.5, 1]
        hist = line["iou_hist"]
        assert len(hist) == 10 and 0 < sum(hist) <= 2 * 32 and hist[0] == 0
        assert line["fg_fraction"] == pytest.approx(sum(hist[5:]) / sum(hist))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, small_config, monkeypatch
):
    from ohemcli.engine.step import NonFiniteLoss
    from ohemcli.model.fast_rcnn import FastRCNN
    from ohemcli.model.losses import RoILosses

    real, calls = FastRCNN.head_losses, []

    def nan_box_at_7(self, *args):
        losses = real(self, *args)
        calls.append(1)  # fixed sampler: one call per iteration
        return RoILosses(losses.cls, losses.box * float("nan")) if len(calls) == 7 else losses

    monkeypatch.setattr(FastRCNN, "head_losses", nan_box_at_7)
    run = tmp_path / "run"
    keys = {"train.iters": 10, "train.log_every": 2, "train.checkpoint_every": 5}
    cfg = small_config(**keys)
    with pytest.raises(NonFiniteLoss, match="box loss became nan at iteration 7") as info:
        train(cfg, run, show_progress=False)
    assert isinstance(info.value, UserError)
    assert f"{run / 'checkpoint.pt'} holds iteration 5" in str(info.value)
    assert load_checkpoint(run / "checkpoint.pt")["state"]["iteration"] == 5
    assert [line["iter"] for line in _log(run)] == [2, 4, 6]  # nothing from iteration 7 on
    assert not (run / "summary.json").exists() and not (run / "evals.jsonl").exists()
    # The advice can be followed as written: --resume keeps the lr (a lower one is refused),
    # so the message names a fresh run with a tenth of the lr, in another or an emptied folder.
    lower = cfg.train.lr / 10
    message = str(info.value)
    assert f"--resume would keep train.lr = {cfg.train.lr:g}" in message
    assert f"--lr {lower:g} and another --out, or after removing {run}" in message
    with pytest.raises(UserError, match=r"train\.lr"):
        Trainer(small_config(**keys, **{"train.lr": lower}), run, resume=True, show_progress=False)


def test_a_checkpoint_with_one_optimizer_group_is_refused_in_one_line(tmp_path, small_config):
    from ohemcli.runs.checkpointer import save_checkpoint

    run = tmp_path / "run"
    train(small_config(**{"train.iters": 2}), run, show_progress=False)
    state = load_checkpoint(run / "checkpoint.pt")
    weights, biases = state["optimizer"]["param_groups"]
    weights["params"] += biases["params"]  # one group for all: biases without their own lr
    state["optimizer"]["param_groups"] = [weights]
    save_checkpoint(run / "checkpoint.pt", state)
    with pytest.raises(UserError, match="other parameter groups"):
        Trainer(small_config(**{"train.iters": 4}), run, resume=True, show_progress=False)
