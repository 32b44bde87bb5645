"""Config loading: YAML, overrides, and one-line errors for unknown keys and wrong types."""

import pytest

from ohemcli.config import ExperimentConfig, config_from_dict, config_to_yaml, load_config
from ohemcli.errors import UserError


def test_defaults_are_the_papers_setting():
    cfg = ExperimentConfig()
    assert (cfg.train.images_per_batch, cfg.sampler.batch_rois, cfg.sampler.fg_fraction) == (
        2,
        128,
        0.25,
    )
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay) == (0.001, 0.9, 0.0005)
    assert (cfg.sampler.ohem_nms_iou, cfg.eval.nms, cfg.eval.max_dets) == (0.7, 0.3, 100)


def test_overrides_beat_yaml_and_none_keeps_yaml(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  iters: 50\n  lr: 0.02\nsampler:\n  name: ohem\n")
    cfg = load_config(path, {"train.iters": 7, "train.lr": None})
    assert cfg.train.iters == 7
    assert cfg.train.lr == 0.02
    assert cfg.sampler.name == "ohem"


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, {"train.lr_steps": [5, 9], "data.root": "/x"})
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg
    assert cfg.train.lr_steps == (5, 9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  iterz: 5\n", "unknown key 'iterz'"),
        ("trainer:\n  iters: 5\n", "unknown section 'trainer'"),
        ("train:\n  iters: five\n", "train.iters: expected an integer"),
        ("train:\n  lr: [1]\n", "train.lr: expected float"),
        ("data:\n  flip: 3\n", "data.flip: expected true or false"),
        ("train: [\n", "invalid YAML"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_int_is_accepted_where_a_float_is_expected():
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
