"""The shipped tiny weights: they load safely, a preset uses them, and the script reproduces."""

from dataclasses import replace

import pytest
import torch

from ohemcli.config import ModelConfig
from ohemcli.model.backbones import build_tiny, shipped_tiny_weights
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.presets import load_preset
from scripts.pretrain import PRETRAIN_SEED, PretrainConfig, pretrain_tiny


def _backbone_state(model: FastRCNN) -> dict[str, torch.Tensor]:
    state = {f"trunk.{k}": v for k, v in model.trunk.state_dict().items()}
    state.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    return state


def test_shipped_weights_load_with_weights_only_and_cover_the_backbone():
    path = shipped_tiny_weights()
    assert path.is_file() and path.stat().st_size < 4_000_000
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = _backbone_state(FastRCNN(ModelConfig(backbone="tiny"), 6))
    assert set(state) == set(expected)
    assert all(state[k].shape == expected[k].shape for k in state)


def test_synth_preset_builds_a_model_whose_backbone_equals_the_file():
    cfg = load_preset("synth_tiny")
    assert cfg.model.backbone == "tiny" and cfg.model.pretrained
    model = FastRCNN(cfg.model, 6)
    state = torch.load(shipped_tiny_weights(), map_location="cpu", weights_only=True)
    loaded = _backbone_state(model)
    for key, value in state.items():
        assert loaded[key].dtype == torch.float32 or not value.is_floating_point()
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


def test_no_pretrained_gives_random_weights_that_differ_from_the_file():
    preset = load_preset("synth_tiny")
    cfg = replace(preset, model=replace(preset.model, pretrained=False))
    state = torch.load(shipped_tiny_weights(), map_location="cpu", weights_only=True)
    torch.manual_seed(3)
    a = build_tiny(cfg.model)
    torch.manual_seed(4)
    b = build_tiny(cfg.model)
    conv_file = state["trunk.0.weight"].float()
    assert not torch.equal(a.trunk[0].weight, conv_file)
    assert not torch.equal(a.trunk[0].weight, b.trunk[0].weight)  # random: depends on the seed


def test_pretraining_is_deterministic_and_uses_other_images_than_the_demo():
    assert PRETRAIN_SEED != 0  # the demo's synthetic set is generated with seed 0
    cfg = PretrainConfig(images=3, bg_per_image=2, epochs=1, batch=8)
    first, _ = pretrain_tiny(cfg)
    second, _ = pretrain_tiny(cfg)
    assert set(first) == set(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    torch.manual_seed(cfg.seed)
    untrained = build_tiny(ModelConfig(backbone="tiny"))
    assert not torch.equal(first["trunk.0.weight"], untrained.trunk[0].weight)  # it trained


def test_pyproject_ships_the_weights_file_as_package_data():
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["ohemcli"]
    relative = shipped_tiny_weights().relative_to(root / "ohemcli").as_posix()
    assert any(fnmatch.fnmatch(relative, p) for p in patterns)
