"""CLI options over presets: which config a command line resolves to."""

import dataclasses
import os

import pytest
import typer
import yaml
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.cli import overrides as ov
from ohemcli.cli.aliases import OPTION_KEYS, choice_enum, option_name
from ohemcli.cli.option_types import Backbone, Device, one_of
from ohemcli.cli.overrides import build_config
from ohemcli.config import SECTIONS, config_to_dict
from ohemcli.config_rules import RULES, Choice, Flag, Number, OrNone, Text
from ohemcli.errors import UserError
from ohemcli.samplers import SAMPLERS, SamplerName

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]

# The parameters of each command that are not config keys: the command's own business.
NOT_CONFIG = {
    "train": {"config", "set_values", "out", "resume", "json_out"},
    "compare": {
        "config",
        "set_values",
        "samplers",
        "seeds",
        "out",
        "progress",
        "bootstrap",
        "baseline",
        "pairs",
        "target_map",
        "json_out",
        "launcher",
        "jobs",
        "gpus_per_run",
        "wait",
        "slurm_partition",
        "slurm_time",
        "slurm_account",
        "slurm_constraint",
        "slurm_mem",
    },
    "bench": {
        "config",
        "set_values",
        "samplers",
        "timed_iters",
        "warmup",
        "mining_runs",
        "eval_runs",
        "json_out",
    },
}


@pytest.fixture(params=[True, False], ids=["cuda", "cpu"])
def cuda(request, monkeypatch):
    monkeypatch.setattr(ov, "cuda_available", lambda: request.param)
    return request.param


def test_synth_defaults_to_its_cpu_preset(cuda):
    assert build_config(None, {"data": "synth"}).model.backbone == "tiny"


def test_real_data_gets_the_papers_preset_on_cuda_and_the_cpu_preset_otherwise(cuda, capsys):
    cfg = build_config(None, {"data": "/some/VOC2007"})
    assert cfg.data.root == "/some/VOC2007"
    said = capsys.readouterr().err
    if cuda:
        assert cfg.model.backbone == "vgg16" and cfg.model.pretrained
        assert (cfg.train.iters, cfg.train.lr_steps) == (40000, (30000,))
        assert "voc07_vgg16" in said and "--config cpu_pretrained" in said
    else:  # the tiny backbone from its shipped weights, early layers frozen, a low lr
        assert cfg.model.backbone == "tiny" and cfg.data.scale <= 400
        assert cfg.model.pretrained and cfg.model.frozen_convs == 2 and cfg.train.lr == 0.01
        assert "cpu_pretrained" in said and "--config voc07_vgg16" in said
    assert len(said.strip().splitlines()) == 1


def test_device_option_chooses_the_preset_and_an_explicit_config_always_wins(cuda, capsys):
    assert build_config(None, {"data": "d", "device": Device.cpu}).model.backbone == "tiny"
    assert build_config(None, {"data": "d", "device": Device.cuda}).model.backbone == "vgg16"
    assert build_config(None, {"data": "d", "device": "cuda"}).train.device == "cuda"
    capsys.readouterr()
    assert build_config("voc07_vgg16", {"data": "d"}).model.backbone == "vgg16"
    assert build_config("cpu_tiny", {"data": "d"}).model.backbone == "tiny"
    assert capsys.readouterr().err == ""


def test_detector_faster_rcnn_gets_the_faster_presets(cuda, capsys):
    from ohemcli.cli.option_types import Detector

    faster = Detector("faster-rcnn")
    synth = build_config(None, {"data": "synth", "detector": faster})
    assert synth.model.detector == "faster-rcnn" and synth.model.backbone == "tiny"
    real = build_config(None, {"data": "/some/VOC2007", "detector": faster})
    said = capsys.readouterr().err
    assert real.model.detector == "faster-rcnn"
    if cuda:  # py-faster-rcnn's VOC07 setting
        assert real.model.backbone == "vgg16" and real.train.iters == 70000
        assert "faster_vgg16" in said and "--config faster_tiny" in said
    else:
        assert real.model.backbone == "tiny" and "faster_tiny" in said
    # an explicit config keeps its own, with the detector laid over it
    assert build_config("cpu_pretrained", {"data": "d", "detector": faster}).model.detector == (
        "faster-rcnn"
    )


def test_options_override_the_preset_only_when_given():
    cfg = build_config("synth_tiny", {"iters": 7, "lr": 0.5, "sampler": SamplerName("ohem")})
    assert (cfg.train.iters, cfg.train.lr, cfg.sampler.name) == (7, 0.5, "ohem")
    untouched = build_config("synth_tiny", {})
    preset = build_config("synth_tiny", {"sampler": None, "iters": None, "out": "elsewhere"})
    assert config_to_dict(untouched) == config_to_dict(preset)
    assert untouched.train.iters == 800  # synth_tiny.yaml's


def _values_for(key: str) -> list:
    """Two or more values that the rule of ``key`` allows, at least one unlike any preset's."""
    rule = RULES[key]
    if isinstance(rule, OrNone):
        rule = rule.inner
    if isinstance(rule, Choice):
        return list(rule.values)
    if isinstance(rule, Flag):
        return [True, False]
    if isinstance(rule, Number):
        if rule.integer:
            return [3, 4]
        low = 0.0 if rule.lo is None else rule.lo  # inside the rule's range (a timeout's 1 s floor)
        return [low + 0.25, low + 0.3]
    assert isinstance(rule, Text), key
    return ["w.pt", "x"]


def _changed_keys(params: dict, base: dict) -> set[str]:
    after = config_to_dict(build_config("synth_tiny", params))
    return {f"{s}.{k}" for s in after for k in after[s] if after[s][k] != base[s][k]}


def test_each_option_lands_on_its_config_key_and_no_other():
    base = config_to_dict(build_config("synth_tiny", {}))
    for param, key in OPTION_KEYS.items():
        # synth_tiny's backbone takes only these sources (caffe, torchvision: vgg16, resnet18)
        values = ["none", "shipped"] if param == "pretrained" else _values_for(key)
        if param == "sampler":  # a built-in or a plugin's import path: checked, not any text
            values = ["ohem", "pkg.module:Cls"]
        changed = [_changed_keys({param: v}, base) for v in values]
        changed = [c for c in changed if c]
        assert changed, param
        implied = {
            "backbone": {"model.pretrained", "model.frozen_convs"},
            "max_dets": {"eval.protocol"},  # "custom"
            "score_thresh": {"eval.protocol"},
            "test_protocol": {"eval.max_dets", "eval.score_thresh"},  # the limits it fixes
        }.get(param, set())
        assert all(key in c and c <= {key} | implied for c in changed), (param, changed)


def test_each_option_is_named_like_its_config_key():
    """``--ohem-nms-iou`` sets sampler.ohem_nms_iou (a reader can grep one for the other)."""
    renamed = {"data": "data.root", "sampler": "sampler.name", "test_protocol": "eval.protocol"}
    for param, key in OPTION_KEYS.items():
        assert key == renamed.get(param, f"{key.split('.')[0]}.{param}"), param


def test_every_table_key_is_a_dotted_config_key_with_a_rule():
    for key in OPTION_KEYS.values():
        section, name = key.split(".")
        assert name in {f.name for f in dataclasses.fields(SECTIONS[section])}, key
        assert key in RULES, key
    assert len(set(OPTION_KEYS.values())) == len(OPTION_KEYS)


@pytest.mark.parametrize("command", sorted(NOT_CONFIG))
def test_every_parameter_is_in_the_table_or_named_as_not_config(command):
    params = {p.name for p in COMMANDS[command].params}
    assert params - set(OPTION_KEYS) == NOT_CONFIG[command]
    assert not NOT_CONFIG[command] & set(OPTION_KEYS)


def test_train_offers_every_option_of_the_table_spelled_from_its_parameter():
    opts = {p.name: p.opts for p in COMMANDS["train"].params}
    for param in OPTION_KEYS:
        assert option_name(param) in opts[param], (param, opts.get(param))


def test_option_name_spells_a_parameter_as_its_flag():
    assert option_name("ohem_nms_iou") == "--ohem-nms-iou"
    assert option_name("data") == "--data"


def test_the_sampler_choice_follows_the_samplers_dict():
    assert [c.value for c in SamplerName] == list(SAMPLERS)


@pytest.mark.parametrize(
    "key",
    [
        "model.backbone",
        "model.roi_op",
        "sampler.ohem_nms_scope",
        "sampler.ohem_loss",
        "sampler.rank_dtype",
        "sampler.hnm_pool",
        "train.device",
    ],
)
def test_the_choices_of_an_option_are_its_rules_values(key):
    param = {v: k for k, v in OPTION_KEYS.items()}[key]
    result = runner.invoke(app, ["train", option_name(param), "bogus"])
    assert result.exit_code == 2 and option_name(param) in result.stderr
    assert all(repr(v) in result.stderr for v in RULES[key].values), result.stderr
    enum = choice_enum("Choice", key)
    assert [c.value for c in enum] == list(RULES[key].values)
    assert all(isinstance(c, str) and c == c.value for c in enum)


def test_a_new_value_in_a_rule_becomes_a_choice(monkeypatch):
    monkeypatch.setitem(RULES, "model.roi_op", Choice(("pool", "align", "warp")))
    assert [c.value for c in choice_enum("RoIOp", "model.roi_op")] == ["pool", "align", "warp"]
    with pytest.raises(TypeError, match="train.iters"):
        choice_enum("Iters", "train.iters")


def test_one_of_joins_with_commas_and_a_last_or():
    assert one_of(["a"]) == "a"
    assert one_of(["a", "b"]) == "a or b"
    assert one_of(iter(["a", "b", "c"])) == "a, b or c"


def test_choosing_another_backbone_means_its_own_weights_unless_told_otherwise(tmp_path):
    def source(config, **params):
        return build_config(config, params).model.pretrained

    assert source("cpu_tiny") == "none"
    assert source("cpu_tiny", backbone=Backbone.vgg16) == "torchvision"  # downloads on its own
    assert source("cpu_tiny", backbone="resnet18") == "torchvision"
    assert source("cpu_tiny", backbone=Backbone.vgg16, pretrained="none") == "none"
    assert source("cpu_tiny", backbone="vgg16", pretrained="caffe") == "caffe"
    own = build_config("cpu_tiny", {"backbone": "vgg16", "weights": tmp_path / "w.pt"})
    assert own.model.pretrained == "none" and own.model.weights == str(tmp_path / "w.pt")
    path = tmp_path / "c.yaml"
    path.write_text("model: {weights: w.pt}\n")
    assert source(str(path), backbone="vgg16") == "none"
    assert source("cpu_tiny", backbone="tiny") == "none"  # the YAML's backbone: its choice holds
    assert source("voc07_vgg16", backbone="vgg16") == "caffe"
    assert source("voc07_vgg16", backbone="tiny") == "shipped"


def test_unknown_preset_names_the_option_and_lists_the_presets():
    with pytest.raises(UserError, match="--config.*cpu_tiny"):
        build_config("nope", {})


def test_an_option_out_of_range_is_named():
    with pytest.raises(UserError, match=r"^--ohem-nms-iou: sampler.ohem_nms_iou = 5.0 .*\(0, 1\]"):
        build_config("synth_tiny", {"ohem_nms_iou": 5.0})
    with pytest.raises(UserError, match=r"^--iters: train.iters = 0"):
        build_config("synth_tiny", {"iters": 0, "lr": 0.5})
    with pytest.raises(UserError, match=r"^--hnm-pool-per-image: sampler.hnm_pool_per_image"):
        build_config("synth_tiny", {"hnm_pool_per_image": 0})


def test_an_error_in_the_yaml_names_the_file_before_any_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {iters: 0}\n")
    with pytest.raises(UserError, match=f"^{path}: train.iters = 0"):
        build_config(str(path), {"iters": 0})


def test_an_unknown_sampler_in_the_yaml_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sampler: {name: random}\n")
    with pytest.raises(UserError, match=f"{path}: sampler.name = 'random'.*fixed, hnm, ohem"):
        build_config(str(path), {})


def test_paths_in_the_config_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_config("synth_tiny", {"data": "voc", "weights": "w.pt"})
    assert cfg.data.root == os.path.join(tmp_path, "voc")
    assert cfg.model.weights == os.path.join(tmp_path, "w.pt")
    assert build_config("synth_tiny", {}).data.root == "synth"


def test_train_builds_its_config_from_its_own_options(monkeypatch, tmp_path):
    import ohemcli.engine.train

    seen = {}
    monkeypatch.setattr(
        ohemcli.engine.train, "train", lambda cfg, out, resume=False: seen.update(cfg=cfg)
    )
    monkeypatch.chdir(tmp_path)
    args = ["train", "--config", "cpu_tiny", "--backbone", "vgg16", "--device", "cpu"]
    args += ["--weights", "w.pt", "--ohem-loss", "cls", "--no-ohem-nms", "--out", "run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.model.backbone, cfg.train.device, cfg.sampler.ohem_loss) == ("vgg16", "cpu", "cls")
    assert type(cfg.train.device) is str and cfg.model.weights == str(tmp_path / "w.pt")
    assert cfg.sampler.ohem_nms is False and cfg.model.pretrained == "none"  # --weights given
    assert cfg.train.iters == build_config("cpu_tiny", {}).train.iters


def test_an_option_out_of_range_at_the_command_line_is_one_line(tmp_path):
    result = runner.invoke(
        app, ["train", "--config", "synth_tiny", "--bg-lo", "2", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: --bg-lo: sampler.bg_lo = 2.0 is not allowed")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_iters_are_its_timed_iterations_not_the_configs(monkeypatch):
    import ohemcli.engine.bench

    seen = {}

    def fake_bench(cfg, names, iters, warmup, mining_runs):
        seen.update(cfg=cfg, names=names, iters=iters)
        return []

    monkeypatch.setattr(ohemcli.engine.bench, "bench_samplers", fake_bench)
    result = runner.invoke(app, ["bench", "--config", "synth_tiny", "--iters", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["iters"] == 5 and seen["names"] == ["fixed", "hnm", "ohem"]
    assert seen["cfg"].train.iters == 800  # synth_tiny.yaml's


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


def test_another_backbone_freezes_its_own_layers_unless_told():
    # cpu_pretrained freezes 2 of tiny's convs; resnet18 then freezes its own stem and layer1
    assert build_config("cpu_pretrained", {}).model.frozen_convs == 2
    assert build_config("cpu_pretrained", {"backbone": "resnet18"}).model.frozen_convs == 5
    assert build_config("cpu_tiny", {"backbone": "vgg16"}).model.frozen_convs == 4
    told = {"backbone": "resnet18", "frozen_convs": 1}
    assert build_config("cpu_pretrained", told).model.frozen_convs == 1
    assert build_config("cpu_pretrained", {"backbone": "tiny"}).model.frozen_convs == 2


@pytest.mark.parametrize(
    "args, said",
    [
        (["compare", "--seeds=-1"], "--seeds: train.seed = -1 is not allowed"),
        (["compare", "--seeds", str(10**20)], f"--seeds: train.seed = {10**20} is not allowed"),
        (["train", "--seed=-1"], "--seed: train.seed = -1 is not allowed"),
        (["train", "--seed", str(10**20)], f"--seed: train.seed = {10**20} is not allowed"),
        (["train", "--iters", "20", "--eval-points", str(10**10)], "--eval-points: 10000000000"),
        (["compare", "--jobs", "0"], "'--jobs'"),
        (["compare", "--bootstrap", "-1"], "--bootstrap -1"),
        (["train", "--workers", "abc"], "'--workers'"),
        (["train", "--no-such-option"], "--no-such-option"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_option_values_are_one_line_before_any_work(tmp_path, args, said):
    # Every one of these is refused before data or folders: nothing appears in the work folder.
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_arguments_still_show_the_help():
    result = CliRunner().invoke(app, [])
    assert "Usage" in result.output and "compare" in result.output


def test_eval_iterations_are_at_most_one_per_iteration():
    from ohemcli.engine.state import eval_iterations

    assert eval_iterations(20, 10**10) == set(range(1, 21))  # no loop over 10**10 points
    assert eval_iterations(20, 4) == {5, 10, 15, 20}


def test_an_os_error_below_any_command_is_one_line_naming_the_file():
    import errno

    from ohemcli.cli.app import _UserErrorGroup

    mini = typer.Typer(cls=_UserErrorGroup)

    @mini.command()
    def save() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/r/checkpoint.pt")

    @mini.command()
    def other() -> None:  # two commands: typer keeps the group (and so its invoke)
        pass

    result = CliRunner().invoke(mini, ["save"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: /runs/r/checkpoint.pt: No space left on device"
    ]
