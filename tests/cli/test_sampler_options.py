"""Sampler options at the command line reach the config keys of the samplers."""

import pytest
from typer.testing import CliRunner

from ohemcli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "compare", "bench"])
@pytest.mark.parametrize("option", ["--ohem-nms-scope", "--hnm-pool", "--rank-dtype"])
def test_sampler_choice_options_reject_other_values(command, option):
    # a hidden alias of --set: out of the help, its key listed by ohem config keys
    assert option not in runner.invoke(app, [command, "--help"]).output
    key = "sampler." + option[2:].replace("-", "_")
    assert key in runner.invoke(app, ["config", "keys", "--json"]).stdout
    result = runner.invoke(app, [command, option, "bogus"])
    assert result.exit_code == 2
    assert option in result.stderr and "Traceback" not in result.output


def test_ohem_nms_scope_reaches_the_config(monkeypatch, tmp_path):
    import ohemcli.engine.train

    seen = {}

    def fake_train(cfg, out, resume=False):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(ohemcli.engine.train, "train", fake_train)
    args = ["train", "--sampler", "ohem", "--out", str(tmp_path / "run")]
    assert runner.invoke(app, [*args, "--ohem-nms-scope", "image"]).exit_code == 0
    assert seen["cfg"].sampler.ohem_nms_scope == "image"
    assert runner.invoke(app, args).exit_code == 0
    assert seen["cfg"].sampler.ohem_nms_scope == "label"  # the default: the release's NMS
    assert seen["cfg"].sampler.hnm_pool == "accumulate"
    assert runner.invoke(app, [*args, "--hnm-pool", "replace"]).exit_code == 0
    assert seen["cfg"].sampler.hnm_pool == "replace"
    assert seen["cfg"].sampler.rank_dtype == "float32"  # the default
    assert runner.invoke(app, [*args, "--rank-dtype", "bfloat16"]).exit_code == 0
    assert seen["cfg"].sampler.rank_dtype == "bfloat16"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help_names_every_built_in_sampler(command):
    from ohemcli.samplers import SAMPLERS

    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert [name for name in SAMPLERS if name not in text] == []


def test_libra_bins_reaches_the_config(monkeypatch, tmp_path):
    import ohemcli.engine.train

    seen = {}
    monkeypatch.setattr(
        ohemcli.engine.train, "train", lambda cfg, out, resume=False: seen.update(cfg=cfg) or {}
    )
    args = ["train", "--sampler", "libra", "--libra-bins", "paper", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["cfg"].sampler.name == "libra" and seen["cfg"].sampler.libra_bins == "paper"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--samplers", "fixed,ohem,libra,pisa", "--baseline", "hnm"],
         "--baseline: hnm is not among the samplers (fixed, ohem, libra, pisa)"),
        (["--samplers", "fixed,nosuch_mod_xyz:Mine"],
         "--samplers: plugin 'nosuch_mod_xyz:Mine': cannot import nosuch_mod_xyz:Mine"),
        (["--samplers", "fixed,ohm"], "--samplers: unknown ohm (choose from fixed, hnm, ohem"),
    ],
)  # fmt: skip
def test_compare_refuses_a_bad_baseline_or_sampler_before_any_work(tmp_path, extra, message):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", "--out", str(out), "--no-progress", *extra])
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert not (out / "runs").exists()


def test_train_sampler_takes_a_plugin_as_the_yaml_does(monkeypatch, tmp_path):
    import ohemcli.engine.train

    seen = {}
    monkeypatch.setattr(
        ohemcli.engine.train, "train", lambda cfg, out, resume=False: seen.update(cfg=cfg) or {}
    )
    plugin = "tests.samplers.plugin_fixtures:RaisesAtThird"
    result = runner.invoke(app, ["train", "--sampler", plugin, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].sampler.name == plugin
    result = runner.invoke(app, ["train", "--sampler", "random", "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "--sampler: sampler.name = 'random'" in result.stderr
    assert not (tmp_path / "r2").exists()
