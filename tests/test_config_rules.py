"""Every config value has a type and a range, checked when the config is loaded."""

import dataclasses

import pytest

from ohemcli.config import SECTIONS, ExperimentConfig, load_config, parse_config
from ohemcli.config_rules import RULES, SAFE_NAME, check_value
from ohemcli.errors import UserError
from ohemcli.presets import load_preset, preset_names


def _all_fields():
    return {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


def test_every_config_field_has_a_rule_and_every_rule_a_field():
    assert _all_fields() - set(RULES) == set(), "add a rule to ohemcli/config_rules.py"
    assert set(RULES) - _all_fields() == set()


def test_defaults_and_every_shipped_preset_pass_their_rules():
    load_config(None)
    for name in preset_names():
        assert isinstance(load_preset(name), ExperimentConfig)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("train.iters", -5, "[1, 10000000]"),
        ("train.iters", 0, "[1, 10000000]"),
        ("train.iters", 10**12, "[1, 10000000]"),
        ("train.lr_steps", (10, 10**12), "[1, 10000000]"),
        ("sampler.batch_rois", 0, "[1, inf)"),
        ("model.roi_size", 0, "[1, 64]"),
        ("sampler.fg_fraction", 1.5, "[0, 1]"),
        ("eval.nms", 5.0, "(0, 1]"),
        ("eval.nms", 0.0, "(0, 1]"),
        ("data.scale", 0, "[1, 10000]"),
        ("train.images_per_batch", 0, "[1, inf)"),
        ("train.checkpoint_every", 0, "[1, inf)"),
        ("train.lr", float("nan"), "a finite number"),
        ("train.lr", float("inf"), "a finite number"),
        ("train.lr", 0.0, "(0, inf)"),
        ("eval.metric", "bogus", "one of voc07, voc10, coco, all"),
        ("model.backbone", "resnet", "one of vgg16, tiny"),
        ("train.lr_steps", (30, 10), "a rising list"),
        ("data.classes", ("a", "a"), "distinct"),
        ("data.classes", ("../x",), "without '/'"),
        ("data.test_split", "../test", "without '/'"),
        ("train.seed", -1, "[0, 4294967295]"),
    ],
)
def test_a_value_out_of_range_is_refused_with_the_allowed_range(key, value, allowed):
    assert allowed in check_value(key, value)
    section, name = key.split(".")
    values = dataclasses.replace(getattr(ExperimentConfig(), section), **{name: value})
    text = f"{section}:\n  {name}: {value!r}\n".replace("'", '"')
    if isinstance(value, tuple):
        text = f"{section}:\n  {name}: {list(value)}\n".replace("'", '"')
    if isinstance(value, float) and value != value:
        text = f"{section}:\n  {name}: .nan\n"
    elif value == float("inf"):
        text = f"{section}:\n  {name}: .inf\n"
    with pytest.raises(UserError) as err:
        parse_config(text, "c.yaml")
    message = str(err.value)
    assert message.startswith(f"c.yaml: {key} = ") and allowed in message and "\n" not in message
    assert getattr(values, name) == value or value != value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.iters", 1),
        ("train.iters", 10_000_000),
        ("sampler.fg_fraction", 0.0),
        ("sampler.fg_fraction", 1),
        ("eval.nms", 1.0),
        ("sampler.mine_every", 0),
        ("model.weights", None),
        ("data.classes", None),
        ("train.lr_steps", ()),
        ("eval.metric", "all"),
    ],
)
def test_values_at_the_edges_of_their_range_pass(key, value):
    assert check_value(key, value) is None


def test_safe_names():
    for ok in ("trainval", "a b", "cat.1", "..x"):
        assert SAFE_NAME.match(ok), ok
    for bad in ("", ".", "..", "a/b", "a\\b", "x\x00", "x\ny", "a" * 201):
        assert not SAFE_NAME.match(bad), bad


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 1\n- 2\n", "expected a mapping of sections, got a list"),
        ("sampler: fixed\n", "section 'sampler' must be a mapping, got 'fixed'"),
        ("3\n", "expected a mapping of sections, got a int"),
        ("train:\n  lr: 1.0e+400\n", "train.lr = inf"),
        ("train:\n  lr: " + "9" * 400 + "\n", "too large for a float"),
    ],
)
def test_shapes_that_are_not_a_config_are_one_line(text, message):
    with pytest.raises(UserError, match=r"^c.yaml: ") as err:
        parse_config(text, "c.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert len(str(err.value)) < 400


def test_non_utf8_yaml_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  iters: 5 # café\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.yaml: not UTF-8 text"):
        load_config(path)
    with pytest.raises(UserError, match=r": not a file"):
        load_config(tmp_path)


def test_long_user_input_is_quoted_short():
    with pytest.raises(UserError) as err:
        parse_config("eval:\n  metric: " + "x" * 5000 + "\n", "c.yaml")
    assert len(str(err.value)) < 400
