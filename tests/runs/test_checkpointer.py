"""The Checkpointer: save then restore gives back every state; a foreign .pt is refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ohemcli.config import ExperimentConfig, TrainConfig, config_to_dict
from ohemcli.engine.optimizer import build_optimizer
from ohemcli.errors import UserError
from ohemcli.runs.checkpointer import (
    CHECKPOINT_KEYS,
    Checkpointer,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    saved_config,
    saved_weights,
)
from ohemcli.samplers.hnm import HNMSampler

TRAIN = TrainConfig(lr=0.1, momentum=0.9, lr_steps=(2,), warmup_iters=2, bias_lr_factor=2.0)
CLASSES = ("cat", "dog")


def _run_objects(path: Path, seed: int) -> Checkpointer:
    """A small model, its optimizer and schedule, an hnm sampler and a generator, all seeded."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    optimizer, scheduler = build_optimizer(model, TRAIN)
    gen = torch.Generator().manual_seed(seed)
    return Checkpointer(path, model, optimizer, scheduler, HNMSampler(), gen)


def _train_a_little(objs: Checkpointer) -> None:
    """Three SGD steps (momentum buffers, a schedule past its warm-up), a pool, generator draws."""
    for _ in range(3):
        objs.optimizer.zero_grad()
        objs.model(torch.randn(5, 3)).square().sum().backward()
        objs.optimizer.step()
        objs.scheduler.step()
    pool = {"img1": {"index": torch.tensor([4, 1]), "score": torch.tensor([0.9, 0.6])}}
    objs.sampler.load_state_dict({"pool": pool})
    torch.rand(7, generator=objs.generator)


def _assert_same(a: object, b: object) -> None:
    """Nested dicts, lists and tensors are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_save_then_restore_gives_back_every_state(tmp_path: Path) -> None:
    cfg = ExperimentConfig()
    cfg = replace(cfg, data=replace(cfg.data, classes=CLASSES))
    saved = _run_objects(tmp_path / "checkpoint.pt", seed=1)
    _train_a_little(saved)
    loop_state = {"iteration": 3, "eval_history": [{"iter": 2, "mAP": 0.25}]}
    saved.save(loop_state, cfg)
    global_draw = torch.rand(4)  # the global RNG right after the save

    fresh = _run_objects(saved.path, seed=2)  # other weights, no momentum, another generator
    assert not torch.equal(fresh.model[0].weight, saved.model[0].weight)
    ckpt = read_checkpoint(saved.path)
    assert set(CHECKPOINT_KEYS) <= set(ckpt)
    assert fresh.restore(ckpt) == loop_state
    assert torch.equal(torch.rand(4), global_draw)  # the global RNG continues as it would have

    _assert_same(fresh.model.state_dict(), saved.model.state_dict())
    _assert_same(fresh.optimizer.state_dict(), saved.optimizer.state_dict())
    _assert_same(fresh.scheduler.state_dict(), saved.scheduler.state_dict())
    _assert_same(fresh.sampler.state_dict(), saved.sampler.state_dict())
    assert torch.equal(fresh.generator.get_state(), saved.generator.get_state())
    assert fresh.scheduler.get_last_lr() == pytest.approx([0.01, 0.02])  # 0.1 (x2 bias), /10
    assert saved_config(ckpt) == config_to_dict(cfg)
    weights, classes = saved_weights(ckpt)
    assert classes == CLASSES and weights.keys() == saved.model.state_dict().keys()

    # Both continue identically: the same step gives the same weights.
    x = torch.randn(5, 3)
    for objs in (saved, fresh):
        objs.optimizer.zero_grad()
        objs.model(x).square().sum().backward()
        objs.optimizer.step()
    _assert_same(fresh.model.state_dict(), saved.model.state_dict())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weights": torch.zeros(2)}, "no 'model' key"),
        (torch.zeros(3), "no 'model' key"),
        ({k: {} for k in CHECKPOINT_KEYS} | {"config": "synth"}, "bad 'config'"),
    ],
)
def test_a_pt_without_our_keys_is_refused_in_one_line(
    tmp_path: Path, content: object, message: str
) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    assert load_checkpoint(path) is not None  # a safe file: only the key check refuses it
    with pytest.raises(UserError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert text == f"{path}: not a checkpoint of ohem ({message})"
    assert "\n" not in text


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"absent.pt: checkpoint not found$"):
        read_checkpoint(tmp_path / "absent.pt")


def test_optimizer_groups_that_do_not_fit_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    saved = _run_objects(path, seed=1)
    ckpt = {
        "model": saved.model.state_dict(),
        "optimizer": torch.optim.SGD(saved.model.parameters(), lr=0.1).state_dict(),  # one group
    }
    save_checkpoint(path, ckpt)
    fresh = _run_objects(path, seed=2)
    with pytest.raises(UserError) as err:
        fresh.restore(load_checkpoint(path))
    assert str(err.value) == (
        f"{path}: its optimizer state has other parameter groups than "
        "train.bias_weight_decay / train.bias_decay_scope give; choose another --out"
    )


def test_a_truncated_checkpoint_is_called_truncated_and_an_unsafe_one_refused(
    tmp_path: Path,
) -> None:
    import collections
    import pickle

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"checkpoint\.pt: this checkpoint is truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps(collections.OrderedDict))  # a global: could run code
    with pytest.raises(UserError, match="refused, this checkpoint holds objects") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)


def test_a_full_disk_while_saving_is_an_oserror_naming_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"iter": 1})

    def full_disk(obj, f):  # what torch's writer raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as info:
        save_checkpoint(path, {"iter": 2})
    assert info.value.filename == str(path) and "\n" not in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"iter": 1}  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left
