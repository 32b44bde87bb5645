"""The training loop: loss falls, checkpoints round-trip, resume matches a straight run."""

import json

import pytest
import torch

from ohemcli.engine.checkpoint import load_checkpoint
from ohemcli.engine.train import Trainer, train
from ohemcli.errors import UserError

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
    from ohemcli.engine.evaluate import evaluate_run

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
    with pytest.raises(UserError, match="another config"):
        train(
            small_config(**{"train.iters": 4, "train.lr": 0.5}),
            run,
            resume=True,
            show_progress=False,
        )


def test_callback_sees_every_logged_record(tmp_path, small_config):
    seen = []
    train(
        small_config(**{"train.iters": 10, "train.eval_points": 2}),
        tmp_path / "run",
        show_progress=False,
        callback=seen.append,
    )
    lines = {
        kind: [json.loads(s) for s in (tmp_path / "run" / name).read_text().splitlines()]
        for kind, name in (("metrics", "metrics.jsonl"), ("eval", "evals.jsonl"))
    }
    for kind, written in lines.items():
        got = [{k: v for k, v in r.items() if k != "kind"} for r in seen if r["kind"] == kind]
        assert got == written and written
    assert [r["iter"] for r in seen if r["kind"] == "metrics"] == [5, 10]
