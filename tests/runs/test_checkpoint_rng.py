"""Issue 35 #3 and #6: a checkpoint's CUDA RNG state is this device's only, an older one with a
state per visible GPU resumes where fewer are visible, and every rank gets its own states back.
CUDA is faked by monkeypatching ``torch.cuda``'s RNG functions (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ohemcli.config import ExperimentConfig, TrainConfig
from ohemcli.engine.optimizer import build_optimizer
from ohemcli.runs.checkpointer import Checkpointer, read_checkpoint, rng_state, set_rng_state
from ohemcli.samplers.hnm import HNMSampler

CUDA1 = torch.device("cuda", 1)


@pytest.fixture()
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """``torch.cuda``'s RNG calls recorded: get returns a state naming the device, set records."""
    calls: dict[str, list] = {"set": [], "set_all": []}

    def get(device: torch.device) -> torch.Tensor:
        return torch.tensor([100 + device.index], dtype=torch.uint8)

    monkeypatch.setattr(torch.cuda, "get_rng_state", get)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: calls["set"].append((s, d)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: calls["set_all"].append(s))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return calls


def test_the_state_of_this_device_only_is_saved(fake_cuda):
    state = rng_state(CUDA1)
    assert state["cuda"].tolist() == [101]
    assert "cuda" not in rng_state(torch.device("cpu")) and "cuda" not in rng_state()


def test_an_old_checkpoint_with_a_state_per_gpu_resumes_on_fewer_gpus(fake_cuda):
    eight = [torch.tensor([k], dtype=torch.uint8) for k in range(8)]  # an 8-GPU host's list
    set_rng_state({"cpu": torch.get_rng_state(), "cuda": eight}, torch.device("cuda", 0))
    assert [(s.tolist(), d) for s, d in fake_cuda["set"]] == [([0], torch.device("cuda", 0))]
    fake_cuda["set"].clear()
    one = eight[:1]  # a 1-GPU checkpoint resumed as local rank 1: nothing to restore there
    set_rng_state({"cpu": torch.get_rng_state(), "cuda": one}, CUDA1)
    assert fake_cuda["set"] == [] and fake_cuda["set_all"] == []


def _objects(path: Path, seed: int, device: torch.device | None = None) -> Checkpointer:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer, scheduler = build_optimizer(model, TrainConfig(lr=0.1, lr_steps=(5,)))
    gen = torch.Generator().manual_seed(seed)
    return Checkpointer(path, model, optimizer, scheduler, HNMSampler(), gen, None, device)


def test_every_rank_gets_its_own_states_back(tmp_path):
    cfg = ExperimentConfig()
    ranks = []
    for seed in (1, 2):  # what two ranks' generators and global RNGs hold at the save
        objs = _objects(tmp_path / "checkpoint.pt", seed)
        torch.rand(3, generator=objs.generator)
        ranks.append(objs.rank_rng())
    objs.save({"iteration": 3}, cfg, rank_rngs=ranks)
    ckpt = read_checkpoint(objs.path)
    for rank in (0, 1):
        fresh = _objects(objs.path, seed=9)
        fresh.restore(ckpt, rank=rank)
        assert fresh.rng_restored
        assert torch.equal(fresh.generator.get_state(), ranks[rank]["sampler_generator"])
        assert torch.equal(torch.get_rng_state(), ranks[rank]["rng"]["cpu"])
    third = _objects(objs.path, seed=9)  # a rank the checkpoint has no states for keeps its own
    before = third.generator.get_state()
    third.restore(ckpt, rank=2)
    assert not third.rng_restored and torch.equal(third.generator.get_state(), before)


def test_a_checkpoint_saved_on_cuda_restores_that_devices_state(tmp_path, fake_cuda):
    objs = _objects(tmp_path / "checkpoint.pt", 1, CUDA1)
    objs.save({"iteration": 1}, ExperimentConfig())
    ckpt = read_checkpoint(objs.path)
    assert ckpt["rng"]["cuda"].tolist() == [101] and "rng_ranks" not in ckpt
    _objects(objs.path, 2, CUDA1).restore(ckpt)
    assert [(s.tolist(), d) for s, d in fake_cuda["set"]] == [([101], CUDA1)]
