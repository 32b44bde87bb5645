"""Issue 35 #4 and #6: a two-process torchrun job (gloo on the CPU) through the real trainer.

Rank 0 evaluates alone while the other rank waits at a barrier; a non-finite loss on one rank
and a run lock that rank 0 cannot take stop both ranks with the same line; a rank that waits
longer than ``train.dist_timeout_s`` stops with one line instead of hanging; the ranks draw
their own RoIs and dropout masks, and the checkpoint keeps every rank's RNG states.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ohemcli.errors import UserError
from ohemcli.runs.checkpointer import read_checkpoint
from ohemcli.samplers.base import random_subset

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _patch(rank: int, scenario: str, sleep_s: float) -> None:
    """Make this process's trainer misbehave as ``scenario`` asks (spawned processes: no
    monkeypatch fixture here, and nothing outlives the process)."""
    import ohemcli.engine.step as step
    import ohemcli.engine.train as train

    evaluate = train.Trainer.evaluate

    def slow_evaluate(self, final: bool) -> dict[str, Any]:
        if not final:
            time.sleep(sleep_s)  # a first VOC07 evaluation, in miniature
        return evaluate(self, final)

    train.Trainer.evaluate = slow_evaluate
    if scenario == "lock":

        @contextlib.contextmanager
        def taken(paths):
            raise UserError(f"{paths.root}: another ohem train holds this run (test)")
            yield

        train.run_lock = taken
    if scenario == "nan":
        loss, calls = step.batch_loss, [0]

        def nan_on_rank_1(*args, **kwargs):
            terms = loss(*args, **kwargs)
            calls[0] += 1
            if rank == 1 and calls[0] == 2:
                return terms._replace(cls=terms.cls * float("nan"))
            return terms

        step.batch_loss = nan_on_rank_1


def _worker(rank: int, port: int, scenario: str, cfg: Any, out: str, sleep_s: float) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    _patch(rank, scenario, sleep_s)
    from ohemcli.engine.train import Trainer, train

    step = Trainer.step
    states: list[torch.Tensor] = []

    def recording_step(self, batch, data_time=0.0):
        if not states:  # the generators as the first iteration starts drawing
            states.extend([self.gen.get_state(), torch.get_rng_state()])
        return step(self, batch, data_time)

    Trainer.step = recording_step
    start = time.monotonic()
    try:
        summary, error = train(cfg, Path(out), show_progress=False), None
    except UserError as exc:
        summary, error = None, str(exc)
    record = {"summary": summary, "error": error, "seconds": time.monotonic() - start}
    torch.save({**record, "states": states}, f"{out}.rank{rank}")
    if dist.is_initialized():
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()


def _run(scenario: str, cfg: Any, out: Path, sleep_s: float = 0.0) -> list[dict[str, Any]]:
    args = (_free_port(), scenario, cfg, str(out), sleep_s)
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    return [torch.load(f"{out}.rank{r}", weights_only=False) for r in (0, 1)]


@pytest.fixture()
def two_rank_config(small_config):
    return small_config(
        **{
            "train.iters": 3,
            "train.eval_points": 2,  # one evaluation at iteration 2, the final one at 3
            "train.log_every": 1,
            "train.dist_timeout_s": 60,
            "data.workers": 0,
        }
    )


def test_a_slow_evaluation_on_rank_0_is_waited_for_and_each_rank_draws_its_own(
    two_rank_config, tmp_path
):
    r0, r1 = _run("slow", two_rank_config, tmp_path / "run", sleep_s=3.0)
    assert r0["error"] is None and r1["error"] is None
    assert r0["summary"]["iters"] == 3 and r1["summary"] == {}  # rank 0 writes the summary
    assert r0["summary"]["tf32"] is False
    # Own generators: the same draw from each rank's sampling generator differs, so do the
    # dropout masks (the global RNG).
    draws = []
    for rank in (r0, r1):
        gen = torch.Generator()
        gen.set_state(rank["states"][0])
        draws.append(random_subset(torch.arange(1000), 16, gen).tolist())
    assert draws[0] != draws[1]
    assert not torch.equal(r0["states"][1], r1["states"][1])
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    gens = [r["sampler_generator"] for r in ckpt["rng_ranks"]]
    assert len(gens) == 2 and not torch.equal(gens[0], gens[1])


def test_a_non_finite_loss_on_rank_1_stops_both_ranks_with_one_line(two_rank_config, tmp_path):
    r0, r1 = _run("nan", two_rank_config, tmp_path / "run")
    for r in (r0, r1):
        assert r["error"] is not None and "loss of rank 1 became nan at iteration 2" in r["error"]
        assert r["seconds"] < 40
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_run_lock_that_rank_0_cannot_take_stops_every_rank(two_rank_config, tmp_path):
    r0, r1 = _run("lock", two_rank_config, tmp_path / "run")
    assert r0["error"] == r1["error"] and "another ohem train holds this run" in r0["error"]


def test_a_rank_that_waits_past_the_timeout_stops_with_one_line(two_rank_config, tmp_path):
    cfg = replace(two_rank_config, train=replace(two_rank_config.train, dist_timeout_s=3.0))
    r0, r1 = _run("slow", cfg, tmp_path / "run", sleep_s=8.0)
    assert r1["error"] is not None and r1["error"].startswith("train.dist_timeout_s: rank 1 ")
    assert r1["seconds"] < 30
    assert r0["error"] is not None and "train.dist_timeout_s" in r0["error"]


def test_faster_rcnn_with_hnm_trains_under_two_ranks(two_rank_config, tmp_path):
    # The RPN's gradients join the all-reduce, and every rank mines every image into the same
    # pool of boxes (a pool that differed would make the ranks' samplers disagree).
    cfg = replace(
        two_rank_config,
        model=replace(
            two_rank_config.model,
            detector="faster-rcnn",
            rpn_pre_nms_train=300,
            rpn_post_nms_train=80,
            rpn_pre_nms_test=300,
            rpn_post_nms_test=40,
        ),
        sampler=replace(two_rank_config.sampler, name="hnm", mine_every=1, hnm_fp_thresh=0.0),
    )
    r0, r1 = _run("slow", cfg, tmp_path / "run")
    assert r0["error"] is None and r1["error"] is None
    summary = r0["summary"]
    assert summary["detector"] == "faster-rcnn" and summary["mining_passes"] == 2
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["sampler"]["box_pool"] and any(k.startswith("rpn.") for k in ckpt["model"])
