"""ohem bench counts the host's waits for the device per iteration (issue 35): CUDA's sync debug
mode reports each one as a warning; the count is theirs, and None where no device can be waited
for."""

import warnings

import torch

from ohemcli.engine import bench
from ohemcli.engine.bench import SYNC_WARNING, count_host_syncs


def test_the_cpu_has_no_syncs_to_count():
    assert count_host_syncs(torch.device("cpu"), lambda: 7) == (7, None)


def test_each_synchronizing_operation_counts_once_and_the_mode_is_put_back(monkeypatch):
    modes = []
    monkeypatch.setattr(bench.torch.cuda, "set_sync_debug_mode", modes.append)

    def step():
        for _ in range(3):  # three .item()s, as CUDA's debug mode words them
            warnings.warn(f"{SYNC_WARNING} (item)", UserWarning, stacklevel=1)
        warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
        return "done"

    assert count_host_syncs(torch.device("cuda"), step) == ("done", 3)
    assert modes == ["warn", "default"]
