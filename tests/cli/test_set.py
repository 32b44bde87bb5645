"""``--set KEY=VALUE`` reaches any config key, checked like a YAML file; hidden aliases stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.cli.overrides import build_config, parse_set
from ohemcli.config import NULL, config_to_dict
from ohemcli.config.keys import KEYS
from ohemcli.errors import UserError

runner = CliRunner()
PACKAGE = Path(__file__).resolve().parents[2] / "ohemcli"


@pytest.fixture
def seen(monkeypatch):
    import ohemcli.engine.train

    got: dict = {}
    monkeypatch.setattr(
        ohemcli.engine.train, "train", lambda cfg, out, resume=False: got.update(cfg=cfg) or {}
    )
    return got


def test_train_set_reaches_the_key(seen, tmp_path):
    args = ["train", "--sampler", "ohem", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--set", "sampler.ohem_nms_scope=image"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].sampler.ohem_nms_scope == "image"
    more = ["--set", "train.lr_steps=[5, 9]", "--set", "model.frozen_convs=null"]
    result = runner.invoke(app, [*args, *more, "--set", "data.flip=false"])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.train.lr_steps, cfg.model.frozen_convs, cfg.data.flip) == ((5, 9), None, False)


def test_the_key_is_spelled_in_at_most_two_places_in_the_package():
    """sampler.ohem_nms_scope: its field (config/schema.py) and its rule (config_rules.py);
    its option, its help, its choices and the sampler's argument are derived."""
    places = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := sum(p.read_text().count(s) for s in ("ohem_nms_scope", "ohem-nms-scope")))
    }
    assert places == {"config/schema.py": 1, "config_rules.py": 1}


def test_a_hidden_alias_and_set_give_the_same_config():
    by_alias = build_config("synth_tiny", {"ohem_nms_iou": 0.5, "bg_lo": 0.0})
    by_set = build_config("synth_tiny", {}, ["sampler.ohem_nms_iou=0.5", "sampler.bg_lo=0"])
    assert config_to_dict(by_alias) == config_to_dict(by_set)


def test_set_comes_after_the_options_and_the_last_one_wins():
    cfg = build_config("synth_tiny", {"iters": 7}, ["train.iters=9", "train.iters=11"])
    assert cfg.train.iters == 11


def test_set_implies_what_the_option_implies():
    by_set = build_config("cpu_tiny", {}, ["model.backbone=vgg16"]).model
    by_option = build_config("cpu_tiny", {"backbone": "vgg16"}).model
    assert by_set == by_option and (by_set.pretrained, by_set.frozen_convs) == ("torchvision", 4)
    protocol = build_config("voc07_vgg16", {}, ["eval.protocol=ohem-release"]).eval
    assert (protocol.max_dets, protocol.score_thresh) == (2000, 0.00001)
    with pytest.raises(UserError, match=r"^--set eval.protocol and --max-dets: give one"):
        build_config("voc07_vgg16", {"max_dets": 5}, ["eval.protocol=default"])


def test_parse_set_reads_yaml_values():
    assert parse_set("train.lr=0.5") == ("train.lr", 0.5)
    assert parse_set("data.classes=[a, b]") == ("data.classes", ["a", "b"])
    assert parse_set("model.weights=null") == ("model.weights", NULL)
    assert parse_set("data.root=a=b") == ("data.root", "a=b")  # the first = splits


@pytest.mark.parametrize(
    ("item", "said"),
    [
        ("sampler.ohem_nms_scope=imag", "--set: sampler.ohem_nms_scope = 'imag' is not allowed"),
        ("sampler.ohem_nms_scop=image", "closest: sampler.ohem_nms_scope"),
        ("ohem_nms_scope=image", "unknown config key 'ohem_nms_scope'; closest: sampler.ohem"),
        ("train.iters=ten", "--set: train.iters: expected an integer, got 'ten'"),
        ("train.iters", "--set: expected KEY=VALUE"),
        ("train.lr_steps=[1,", "--set train.lr_steps: '[1,' is not a YAML value"),
        ("train.lr_steps=[9, 5]", "train.lr_steps = (9, 5) is not allowed; expected a rising"),
    ],
)
def test_a_bad_set_is_one_line_naming_the_key_before_any_work(tmp_path, item, said):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--set", item, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr
    assert "Traceback" not in result.output and not out.exists()


def test_every_command_that_takes_a_config_takes_set(monkeypatch):
    import ohemcli.engine.bench

    seen = {}
    monkeypatch.setattr(
        ohemcli.engine.bench,
        "bench_samplers",
        lambda cfg, names, iters, warmup, mining_runs: seen.update(cfg=cfg) or [],
    )
    args = ["bench", "--json", "--set", "sampler.hnm_pool=replace", "--hnm-pool-per-image", "9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (seen["cfg"].sampler.hnm_pool, seen["cfg"].sampler.hnm_pool_per_image) == ("replace", 9)
    for command in ("train", "compare", "bench"):
        assert "--set" in runner.invoke(app, [command, "--help"]).output


def test_config_keys_lists_every_key_with_type_range_and_default():
    result = runner.invoke(app, ["config", "keys", "--json"])
    assert result.exit_code == 0, result.output
    keys = {k["key"]: k for k in json.loads(result.stdout)}
    assert list(keys) == list(KEYS)
    assert keys["sampler.ohem_nms_scope"] == {
        "key": "sampler.ohem_nms_scope",
        "type": "str",
        "allowed": "one of label, image",
        "default": "label",
    }
    assert keys["train.lr_steps"]["default"] == [30000]
    table = runner.invoke(app, ["config", "keys"], env={"COLUMNS": "200"}).stdout
    assert "sampler.ohem_nms_iou" in table and "(0, 1]" in table
