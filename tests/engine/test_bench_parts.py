"""ohem bench's parts of a step: medians per part, and the table that prints them."""

import sys

import pytest

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
        trainer = SimpleNamespace(step=lambda batch: calls.append((name, batch)) or batch)
        batches = (f"{name}{i}" for i in range(10))
        return SimpleNamespace(trainer=trainer, batches=batches, task=name, results=[])

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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_in_use_is_under_the_peak_on_this_machine():
    import torch

    from ohemcli.device import memory_in_use_mb, peak_memory_mb

    cpu = torch.device("cpu")
    assert 0 < memory_in_use_mb(cpu) <= peak_memory_mb(cpu)
