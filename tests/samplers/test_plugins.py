"""The user's own sampler: by import path and by entry point, its record in the run folder,
resume through its state_dict, and one line for each way it can fail."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.fileio import read_json
from ohemcli.launch.compare import compare
from ohemcli.runs.checkpointer import load_checkpoint
from ohemcli.runs.paths import folder_name
from ohemcli.samplers import build_sampler, check_sampler_names
from ohemcli.samplers.base import ImageRoIs
from ohemcli.samplers.plugins import PluginError, PluginSampler

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "plugins"
EXAMPLE = "hard_after_warmup:HardAfterWarmup"
FIXTURES = "tests.samplers.plugin_fixtures"


@pytest.fixture()
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.fixture()
def tiny(small_config):
    return small_config(**{"train.iters": 4, "train.checkpoint_every": 2, "train.log_every": 2})


def _rois(n: int) -> ImageRoIs:
    labels = torch.tensor([1, 1] + [0] * (n - 2))
    return ImageRoIs(torch.zeros(n, 4), labels, torch.zeros(n), torch.zeros(n, 4), "i")


def test_the_example_follows_the_protocol(example_on_path):
    from ohemcli.model.losses import RoILosses

    sampler = build_sampler(SamplerConfig(name=EXAMPLE))
    assert isinstance(sampler, PluginSampler) and sampler.needs_roi_losses
    assert sampler.info.import_path == EXAMPLE and sampler.info.version is None  # a loose module
    sampler.inner.warmup = 0  # hard from the first image: negatives by loss, highest first
    cls = torch.tensor([0.0, 0.0, 0.1, 0.9, 0.5, 0.2])
    sel = sampler.select(_rois(6), RoILosses(cls, torch.zeros(6)), 4, torch.Generator())
    assert sel.indices[0].item() in (0, 1) and sel.indices[1:].tolist() == [3, 4, 5]
    assert sampler.state_dict() == {"seen": 1}


def test_a_compare_runs_the_example_and_survives_a_plugin_that_raises(
    example_on_path, tiny, tmp_path
):
    bad = f"{FIXTURES}:RaisesAtThird"
    outcome = compare(tiny, [bad, "fixed", EXAMPLE], [1], tmp_path / "cmp", show_progress=False)
    # the plugin that raised fails its own run, in one line naming it and the call
    assert [f.name for f in outcome.failures] == [f"{folder_name(bad)}-s1"]
    assert outcome.failures[0].last_line.endswith(
        f"PluginError: sampler plugin '{bad}': select() raised ValueError: boom"
    )
    runs = {p.name: p for p in outcome.finished(tiny.train.iters)}
    example = f"{folder_name(EXAMPLE)}-s1"
    assert ":" not in example  # the import path's colon stays out of folder names
    assert set(runs) == {"fixed-s1", example}  # the other runs of the grid finished
    record = read_json(runs[example] / "plugin.json")
    assert record == {
        "name": EXAMPLE, "import_path": EXAMPLE, "distribution": None, "version": None,
    }  # fmt: skip
    assert not (runs["fixed-s1"] / "plugin.json").exists()
    # 4 iterations of 2 images: 8 select() calls, saved through the plugin's state_dict
    assert load_checkpoint(runs[example] / "checkpoint.pt")["sampler"] == {"seen": 8}
    # the report pairs the plugin with fixed like any sampler
    from ohemcli.report import load_runs
    from ohemcli.report.render import write_report

    write_report(tmp_path / "cmp", load_runs(list(runs.values())), plots=False, bootstrap=0)
    pairs = (tmp_path / "cmp" / "pairs.csv").read_text().splitlines()
    assert len(pairs) == 2 and pairs[1].startswith(f"{EXAMPLE},fixed,")


def test_an_entry_point_names_the_plugin_and_its_package_version(
    example_on_path, tiny, tmp_path, monkeypatch
):
    site = tmp_path / "site"
    info = site / "fakepkg-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[ohemcli.samplers]\nwarmhard = {EXAMPLE}\n")
    monkeypatch.syspath_prepend(str(site))
    check_sampler_names(["fixed", "warmhard"])
    sampler = build_sampler(SamplerConfig(name="warmhard"))
    assert sampler.info.to_dict() == {
        "name": "warmhard", "import_path": EXAMPLE, "distribution": "fakepkg", "version": "1.2.3",
    }  # fmt: skip
    from ohemcli.engine.train import train

    run = tmp_path / "run"
    cfg = replace(tiny, sampler=SamplerConfig(name="warmhard"), train=replace(tiny.train, iters=1))
    train(cfg, run, show_progress=False)
    assert read_json(run / "plugin.json")["version"] == "1.2.3"


def test_resume_restores_the_plugin_state(example_on_path, small_config, tmp_path):
    from ohemcli.engine.train import train

    def cfg(iters):
        return small_config(
            **{"sampler.name": EXAMPLE, "train.iters": iters, "train.checkpoint_every": 2}
        )

    run = tmp_path / "run"
    train(cfg(2), run, show_progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["sampler"] == {"seen": 4}
    train(cfg(4), run, resume=True, show_progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["sampler"] == {"seen": 8}  # 4 + 4, not 4


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuch_module_xyz:Sampler", r"plugin 'nosuch_module_xyz:Sampler': cannot import .*"
         "ModuleNotFoundError"),
        (f"{FIXTURES}:Missing", r"cannot import .*AttributeError"),
        (f"{FIXTURES}:NoSelect", r"plugin '.*:NoSelect' has no select\(\) method"),
        (f"{FIXTURES}:BadInit", r"plugin '.*:BadInit': constructing it raised OSError: no licence"),
        ("nosuch", r"--samplers: unknown nosuch \(choose from fixed, hnm, ohem, ohem-mmdet"),
    ],
)  # fmt: skip
def test_a_broken_plugin_is_one_line_before_any_work(name, message):
    with pytest.raises(UserError, match=message) as info:
        check_sampler_names(["fixed", name])
    assert "\n" not in str(info.value)


def test_a_plugin_that_answers_outside_the_protocol_names_the_call():
    sampler = build_sampler(SamplerConfig(name=f"{FIXTURES}:OutOfRange"))
    with pytest.raises(PluginError, match=r"OutOfRange': select\(\) returned a position outside"):
        sampler.select(_rois(3), None, 2, torch.Generator())


def test_two_plugins_that_would_share_a_run_folder_are_refused_up_front(tiny, tmp_path):
    """``m:A_B`` and ``m_A:B`` both spell ``m_A_B``: the second would reuse the first's run."""
    one, two = f"{FIXTURES}:Twin_A", f"{FIXTURES}_Twin:A"
    assert folder_name(one) == folder_name(two)
    with pytest.raises(UserError, match="would share the run folder") as info:
        compare(tiny, ["fixed", one, two], [1], tmp_path / "cmp", show_progress=False)
    assert one in str(info.value) and two in str(info.value)
    assert not (tmp_path / "cmp").exists()  # refused before anything is written


@pytest.mark.slow
def test_a_grid_of_plugins_that_exit_crash_and_print_finishes_the_rest_and_names_them(
    tiny, tmp_path
):
    """In process (--jobs 1): sys.exit() in select fails its own run, as a raise does; a plugin
    that prints leaves stdout one JSON document; the others finish; exit 1 naming the failed
    runs on stderr and in report.md."""
    import json

    import yaml
    from typer.testing import CliRunner

    from ohemcli.cli import app
    from ohemcli.config import config_to_dict

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(tiny)))
    exits, raises, prints = (f"{FIXTURES}:{c}" for c in ("ExitsInSelect", "RaisesAtThird",
                                                         "PrintsInSelect"))  # fmt: skip
    out = tmp_path / "cmp"
    args = ["compare", "--config", str(config), "--samplers", f"{exits},fixed,{raises},{prints}",
            "--seeds", "1", "--out", str(out), "--jobs", "1", "--json", "--bootstrap", "0",
            "--no-progress"]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1, done.output
    doc = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert sorted(r["run"] for r in doc["runs"]) == sorted(
        ["fixed-s1", f"{folder_name(prints)}-s1"]
    )
    failed = [f"{folder_name(exits)}-s1", f"{folder_name(raises)}-s1"]
    assert [line.split(" ")[0] for line in doc["failed"]] == failed
    assert "select() raised SystemExit: 0" in doc["failed"][0]
    assert "debug: select called" in done.stderr and "Traceback" not in done.output
    flat = "".join(ch for ch in done.stderr if not ch.isspace() and ch != "│")
    assert all(name in flat for name in failed)
    report = (out / "report.md").read_text()
    section = report[report.index("## Runs that did not finish") :]
    assert all(f"- {name} (failed): " in section for name in failed)


@pytest.mark.parametrize(("cls", "dtype"), [("BoolMask", "bool"), ("Uint8", "uint8")])
def test_a_mask_or_uint8_answer_is_refused_naming_the_plugin(cls, dtype):
    sampler = build_sampler(SamplerConfig(name=f"{FIXTURES}:{cls}"))
    with pytest.raises(PluginError, match=rf"'{FIXTURES}:{cls}': select\(\) returned a {dtype} "):
        sampler.select(_rois(4), None, 2, torch.Generator())


@pytest.mark.parametrize(("cls", "why"), [("LambdaState", "pickle"), ("ClassState", "")])
def test_a_state_that_does_not_load_back_is_refused_at_the_save(cls, why):
    sampler = build_sampler(SamplerConfig(name=f"{FIXTURES}:{cls}"))
    with pytest.raises(PluginError, match=rf"'{FIXTURES}:{cls}': state_dict\(\) must hold") as info:
        sampler.state_dict()
    assert why in str(info.value).lower() and "\n" not in str(info.value)


def test_a_plugin_far_over_its_budget_is_warned_once_with_the_factor(warnings_seen):
    sampler = build_sampler(SamplerConfig(name=f"{FIXTURES}:EveryRoITwenty"))
    for _ in range(3):
        assert len(sampler.select(_rois(10), None, 5, torch.Generator()).indices) == 200
    warned = [r.getMessage() for r in warnings_seen.records if "budget" in r.getMessage()]
    assert len(warned) == 1 and "EveryRoITwenty" in warned[0] and "(40x)" in warned[0], warned


def test_an_entry_point_named_like_a_built_in_is_warned_about(tmp_path, monkeypatch, warnings_seen):
    import ohemcli.samplers.plugins as plugins

    site = tmp_path / "site"
    info = site / "shadow-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ohemcli.samplers]\nohem = {EXAMPLE}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_SHADOW_CHECKED", set())
    check_sampler_names(["fixed", "ohem"])
    build_sampler(SamplerConfig(name="ohem"))  # the built-in, and no second warning
    warned = [r.getMessage() for r in warnings_seen.records if "entry point" in r.getMessage()]
    assert len(warned) == 1 and "'ohem' is a built-in" in warned[0] and EXAMPLE in warned[0]


@pytest.mark.slow
def test_a_plugins_thread_count_does_not_outlive_its_run(small_config, tmp_path):
    from ohemcli.engine.train import train
    from tests.helpers import torch_threads

    cfg = small_config(**{"sampler.name": f"{FIXTURES}:SetsThreads", "train.iters": 2})
    with torch_threads(2):
        train(cfg, tmp_path / "run", show_progress=False)
        assert torch.get_num_threads() == 2
