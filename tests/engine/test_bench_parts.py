"""ohem bench's parts of a step: medians per part, and the table that prints them."""

import sys

import pytest
import torch

from ohemcli.cli.bench import parts_table
from ohemcli.engine.bench import STEP_PARTS, median_parts


def test_median_parts_by_hand():
    parts = [
        {"trunk": 0.3, "readonly_pool": 0.1, "backward": 0.2},
        {"trunk": 0.1, "readonly_pool": 0.3, "backward": 0.4},
        {"trunk": 0.2, "readonly_pool": 0.2, "backward": 0.9},
    ]
    got = median_parts(parts)
    assert list(got) == list(STEP_PARTS)
    assert got["trunk"] == 0.2 and got["readonly_pool"] == 0.2 and got["backward"] == 0.4
    assert got["select"] == 0.0  # a part no iteration had
    assert median_parts([]) == dict.fromkeys(STEP_PARTS, 0.0)


def test_the_parts_table_has_a_row_per_sampler_and_a_column_per_part():
    rows = [
        {"sampler": "fixed", "parts": dict.fromkeys(STEP_PARTS, 0.01)},
        {"sampler": "ohem", "parts": dict.fromkeys(STEP_PARTS, 0.02)},
    ]
    table = parts_table(rows)
    assert table.row_count == 2 and len(table.columns) == 1 + len(STEP_PARTS)
    assert list(table.columns[0].cells) == ["fixed", "ohem"]
    assert list(table.columns[1].cells) == ["0.0100", "0.0200"]


def test_interleaved_iterations_rotate_the_order_and_keep_each_samplers_batches():
    from types import SimpleNamespace

    from ohemcli.engine.bench import _interleave

    calls = []

    def bench(name):
        trainer = SimpleNamespace(
            step=lambda batch: calls.append((name, batch)) or batch, device=torch.device("cpu")
        )
        batches = (f"{name}{i}" for i in range(10))
        clock = SimpleNamespace(take=lambda: {"trunk": len(calls)})
        return SimpleNamespace(
            trainer=trainer,
            batches=batches,
            task=name,
            results=[],
            parts=[],
            clock=clock,
            syncs=[],
        )

    class Progress:
        def advance(self, task):
            pass

    benches = [bench("a"), bench("b"), bench("c")]
    _interleave(benches, 3, Progress())
    assert [name for name, _ in calls] == list("abcbcacab")
    assert [b.results for b in benches] == [
        ["a0", "a1", "a2"],
        ["b0", "b1", "b2"],
        ["c0", "c1", "c2"],
    ]
    assert [p["trunk"] for p in benches[1].parts] == [2, 4, 9]  # taken right after each step
    assert [b.syncs for b in benches] == [[None] * 3] * 3  # the CPU has no host syncs to count


def test_the_clock_times_each_part_of_a_real_step_from_outside():
    """The step runs its parts as given; the clock's wrapped parts name each one that ran, and
    the weights move exactly as with the plain parts."""
    import torch

    from ohemcli.config import SamplerConfig
    from ohemcli.engine.bench import PartClock
    from ohemcli.engine.step import Updater, train_step
    from ohemcli.samplers import build_sampler
    from tests.engine.test_rank_pool import _batch, _model

    def run(parts):
        model = _model(dropout=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        updater = Updater(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0))
        sampler = build_sampler(SamplerConfig(name="ohem"))
        torch.manual_seed(7)
        gen = torch.Generator().manual_seed(1)
        args = (model, sampler, _batch(), updater, 16, gen, 1)
        result = train_step(*args, parts=parts) if parts else train_step(*args)
        return result, [p.detach().clone() for p in model.parameters()]

    clock = PartClock(torch.device("cpu"))
    timed, timed_weights = run(clock.timed())
    plain, plain_weights = run(None)
    seconds = clock.take()
    assert list(seconds) == list(STEP_PARTS) and all(v > 0 for v in seconds.values())
    assert clock.take() == {}
    assert timed.loss == plain.loss
    assert all(torch.equal(a, b) for a, b in zip(timed_weights, plain_weights, strict=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_in_use_is_under_the_peak_on_this_machine():
    import torch

    from ohemcli.device import memory_in_use_mb, peak_memory_mb

    cpu = torch.device("cpu")
    assert 0 < memory_in_use_mb(cpu) <= peak_memory_mb(cpu)
