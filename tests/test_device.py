"""Device choice, and each local job's thread share of the cores (capped by OMP_NUM_THREADS)."""

from __future__ import annotations

import pytest

from ohemcli import device
from ohemcli.errors import UserError


@pytest.mark.parametrize(
    ("cores", "jobs", "omp", "threads"),
    [
        (8, 2, None, 4),  # half of the cores each
        (2, 2, None, 1),
        (2, 3, None, 1),  # never under one thread
        (8, 2, "1", 1),  # OMP_NUM_THREADS caps the share: the demo's numbers on any machine
        (8, 2, "16", 4),  # ... but never raises it
        (8, 2, "", 4),  # empty or nonsense is ignored
        (8, 2, "x", 4),
    ],
)
def test_threads_per_job(monkeypatch, cores, jobs, omp, threads):
    monkeypatch.setattr(device, "available_cpus", lambda: cores)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert device.threads_per_job(jobs) == threads


def test_available_cpus_is_at_least_one():
    assert device.available_cpus() >= 1


def test_cuda_without_a_gpu_is_a_user_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto").type == "cpu"
    with pytest.raises(UserError, match="--device cuda"):
        device.resolve_device("cuda")
