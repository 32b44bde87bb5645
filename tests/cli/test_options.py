"""CLI options over presets: which config a command line resolves to."""

import dataclasses
import inspect
import os

import pytest
import yaml
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.cli import options as opts
from ohemcli.cli.options import Backbone, ConfigFlags, Device, build_config
from ohemcli.config import config_to_dict
from ohemcli.errors import UserError
from ohemcli.samplers import SAMPLERS, SamplerName

runner = CliRunner()


@pytest.fixture(params=[True, False], ids=["cuda", "cpu"])
def cuda(request, monkeypatch):
    monkeypatch.setattr(opts, "cuda_available", lambda: request.param)
    return request.param


def test_synth_defaults_to_its_cpu_preset(cuda):
    assert build_config(None, ConfigFlags(data="synth")).model.backbone == "tiny"


def test_real_data_gets_the_papers_preset_on_cuda_and_the_cpu_preset_otherwise(cuda, capsys):
    cfg = build_config(None, ConfigFlags(data="/some/VOC2007"))
    assert cfg.data.root == "/some/VOC2007"
    said = capsys.readouterr().err
    if cuda:
        assert cfg.model.backbone == "vgg16" and cfg.model.pretrained
        assert (cfg.train.iters, cfg.train.lr_steps) == (40000, (30000,))
        assert "voc07_vgg16" in said and "--config cpu_tiny" in said
    else:
        assert cfg.model.backbone == "tiny" and cfg.data.scale <= 400
        assert "cpu_tiny" in said and "--config voc07_vgg16" in said
    assert len(said.strip().splitlines()) == 1


def test_device_option_chooses_the_preset_and_an_explicit_config_always_wins(cuda, capsys):
    assert build_config(None, ConfigFlags(data="d", device=Device.cpu)).model.backbone == "tiny"
    assert build_config(None, ConfigFlags(data="d", device=Device.cuda)).model.backbone == "vgg16"
    capsys.readouterr()
    assert build_config("voc07_vgg16", ConfigFlags(data="d")).model.backbone == "vgg16"
    assert build_config("cpu_tiny", ConfigFlags(data="d")).model.backbone == "tiny"
    assert capsys.readouterr().err == ""


def test_options_override_the_preset_only_when_given():
    cfg = build_config("synth_tiny", ConfigFlags(iters=7, lr=0.5, sampler=SamplerName("ohem")))
    assert (cfg.train.iters, cfg.train.lr, cfg.sampler.name) == (7, 0.5, "ohem")
    untouched = build_config("synth_tiny", ConfigFlags())
    preset = build_config("synth_tiny", ConfigFlags(sampler=None, iters=None))
    assert config_to_dict(untouched) == config_to_dict(preset)
    assert untouched.train.iters == 800  # synth_tiny.yaml's


def _changed_keys(flags: ConfigFlags, base) -> set[str]:
    before, after = config_to_dict(base), config_to_dict(flags.apply(base))
    return {f"{s}.{k}" for s in after for k in after[s] if after[s][k] != before[s][k]}


def test_each_flag_lands_on_the_config_key_of_its_name():
    """ConfigFlags.apply writes each field onto the key of the same name (a reader can grep it)."""
    base = build_config("synth_tiny", ConfigFlags())
    candidates = {"bool": [True, False], "int": [3, 4], "float": [0.25, 0.3], "str": ["x"]}
    special = {"sampler": "sampler.name", "data": "data.root"}
    for f in dataclasses.fields(ConfigFlags):
        kind = f.type.split(" | ")[0]
        if kind == "Path":
            values = ["w.pt"]
        else:
            enum = SamplerName if kind == "SamplerName" else getattr(opts, kind, [])
            values = candidates.get(kind) or list(enum)
        changed = [_changed_keys(ConfigFlags(**{f.name: v}), base) for v in values]
        changed = [c for c in changed if c]
        assert changed, f.name
        for keys in changed:
            named = {k for k in keys if k.split(".")[1] == f.name or k == special.get(f.name)}
            extra = keys - named - ({"model.pretrained"} if f.name == "backbone" else set())
            assert len(named) == 1 and not extra, (f.name, keys)


def test_every_flag_is_an_option_of_train():
    params = inspect.signature(
        next(c.callback for c in app.registered_commands if c.name == "train")
    ).parameters
    assert {f.name for f in dataclasses.fields(ConfigFlags)} <= set(params)


def test_the_sampler_choice_follows_the_samplers_dict():
    assert [c.value for c in SamplerName] == list(SAMPLERS)


def test_choosing_vgg16_means_imagenet_weights_unless_told_otherwise():
    assert build_config("synth_tiny", ConfigFlags(backbone=Backbone.vgg16)).model.pretrained
    off = build_config("synth_tiny", ConfigFlags(backbone=Backbone.vgg16, pretrained=False))
    assert not off.model.pretrained


def test_unknown_preset_names_the_option_and_lists_the_presets():
    with pytest.raises(UserError, match="--config.*cpu_tiny"):
        build_config("nope", ConfigFlags())


def test_an_option_out_of_range_is_named():
    with pytest.raises(UserError, match=r"^--ohem-nms-iou: sampler.ohem_nms_iou = 5.0 .*\(0, 1\]"):
        build_config("synth_tiny", ConfigFlags(ohem_nms_iou=5.0))
    with pytest.raises(UserError, match=r"^--iters: train.iters = 0"):
        build_config("synth_tiny", ConfigFlags(iters=0))


def test_an_unknown_sampler_in_the_yaml_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sampler: {name: random}\n")
    with pytest.raises(UserError, match=f"{path}: sampler.name = 'random'.*fixed, hnm, ohem"):
        build_config(str(path), ConfigFlags())


def test_paths_in_the_config_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_config("synth_tiny", ConfigFlags(data="voc", weights="w.pt"))
    assert cfg.data.root == os.path.join(tmp_path, "voc")
    assert cfg.model.weights == os.path.join(tmp_path, "w.pt")
    assert build_config("synth_tiny", ConfigFlags()).data.root == "synth"


@pytest.mark.slow
def test_the_yamls_sampler_counts_when_no_sampler_option_is_given(tmp_path, small_config):
    raw = config_to_dict(small_config(**{"train.iters": 2, "train.lr_steps": []}))
    raw["sampler"] = {"name": "ohem", "batch_rois": 32}
    path = tmp_path / "ohem.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sampler"]["name"] == "ohem"
    assert '"sampler": "ohem"' in result.stdout
