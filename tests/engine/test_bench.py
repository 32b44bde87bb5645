"""ohem bench: hnm's mining pass is timed beside the bare forward of the same images."""

import pytest

from ohemcli.engine.bench import bench_samplers

pytestmark = pytest.mark.slow


def test_bench_rows_report_the_mining_pass_beside_the_bare_forward(small_config):
    cfg = small_config(**{"train.images_per_batch": 2})
    (hnm,) = bench_samplers(cfg, ["hnm"], iters=1, warmup=0, show_progress=False, mining_runs=1)
    assert hnm["mining_s_per_image"] > 0 and hnm["forward_s_per_image"] > 0
    ratio = hnm["mining_s_per_image"] / hnm["forward_s_per_image"]
    assert hnm["mining_overhead"] == pytest.approx(ratio - 1)
    # The pass's seconds are its s/image over the 12 training images of small_synth.
    assert hnm["mining_pass_s"] == pytest.approx(12 * hnm["mining_s_per_image"])
    assert hnm["effective_s_per_iter"] == pytest.approx(
        hnm["s_per_iter"] + hnm["mining_s_per_iter"]
    )
    assert "host_syncs_per_iter" in hnm and hnm["host_syncs_per_iter"] is None  # the CPU's


def test_bench_times_each_part_of_ohems_step_from_outside(small_config):
    """The parts table's numbers: every part of ohem's step (read-only pass included) timed,
    and together no more than the whole step."""
    from ohemcli.engine.bench import STEP_PARTS

    (ohem,) = bench_samplers(small_config(), ["ohem"], iters=2, warmup=1, show_progress=False)
    assert list(ohem["parts"]) == list(STEP_PARTS)
    assert all(seconds > 0 for seconds in ohem["parts"].values()), ohem["parts"]
    assert sum(ohem["parts"].values()) <= ohem["s_per_iter"] * 1.05
