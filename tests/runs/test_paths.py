"""Run-folder and compare-folder file names are spelled only in runs/paths.py."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from ohemcli.config import load_config
from ohemcli.runs.paths import (
    PLOT_NAMES,
    ComparePaths,
    RunPaths,
    default_compare_dir,
    default_run_dir,
    run_dirs,
)
from ohemcli.runs.settings import comparable_config, first_difference, setting_hash

PACKAGE = Path(__file__).resolve().parents[2] / "ohemcli"
OWNER = PACKAGE / "runs" / "paths.py"
NAMES = [
    "config.yaml", "metrics.jsonl", "evals.jsonl", "checkpoint.pt", "summary.json",
    "metrics.json", "matches.npz", "compare.yaml", "results.csv", "summary.csv", "pairs.csv",
    "report.md", "report.html", ".submitit", *(f"{name}.png" for name in PLOT_NAMES),
]  # fmt: skip
# A file name as a path or a path's tail ("eval/metrics.json", "runs/*/summary.json"); prose
# that mentions a file (help text, messages) has spaces and is not a path.
PATH_LIKE = re.compile(r"^\S*(^|[/*])(" + "|".join(map(re.escape, NAMES)) + r")$")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def file_name_literals(source: str) -> list[str]:
    """String constants in code (not docstrings) that spell a run-folder file name."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and PATH_LIKE.match(node.value)
    ]


def test_the_checker_finds_literals_and_ignores_prose() -> None:
    code = '''"""Reads summary.json."""
def f(p):
    """Opens metrics.jsonl."""
    help = "Print summary.json on stdout."
    return p / "summary.json", p.glob("runs/*/checkpoint.pt"), f"{p}/eval/metrics.json"
'''
    assert file_name_literals(code) == [
        "summary.json",
        "runs/*/checkpoint.pt",
        "/eval/metrics.json",
    ]


def test_file_names_are_spelled_only_in_the_paths_module() -> None:
    owner = OWNER.read_text(encoding="utf-8")
    for name in NAMES:
        stem = name.removesuffix(".png")
        assert name in owner or stem in owner, f"{name} is not defined in {OWNER.name}"
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != OWNER:
            hits = file_name_literals(path.read_text(encoding="utf-8"))
            if hits:
                found[str(path.relative_to(PACKAGE))] = hits
    assert not found, f"run-folder file names outside runs/paths.py (use RunPaths): {found}"


def test_paths_and_folders(tmp_path: Path) -> None:
    out = ComparePaths(tmp_path)
    run = out.run("ohem", 2)
    assert run.root == tmp_path / "runs" / "ohem-s2"
    assert run.matches.parent == run.eval_dir and run.eval_metrics.parent == run.eval_dir
    assert out.plot("chosen_iou").parent == out.plots_dir
    assert not out.is_compare() and run_dirs(tmp_path) == [] and not out.any_checkpoint()
    run.root.mkdir(parents=True)
    run.summary.write_text("{}")
    assert (
        out.is_compare() and run_dirs(tmp_path) == [run.root] and run_dirs(run.root) == [run.root]
    )
    run.checkpoint.write_bytes(b"")
    assert out.any_checkpoint()


def test_default_folders_name_the_data_sampler_and_seed(tmp_path: Path) -> None:
    root = tmp_path / "my_voc"
    cfg = load_config(None, {"data.root": str(root), "sampler.name": "hnm", "train.seed": 7})
    assert default_run_dir(cfg) == Path("runs/my_voc-hnm-s7")
    assert default_compare_dir(cfg) == Path("runs/compare-my_voc")
    synth = load_config(None, {"sampler.name": "ohem", "train.seed": 0})
    assert default_run_dir(synth) == Path("runs/synth-ohem-s0")
    assert default_compare_dir(synth) == Path("runs/compare-synth")
    assert ComparePaths(tmp_path).submitit == tmp_path / ".submitit"


def test_last_logged_iter_skips_a_torn_line(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    assert paths.last_logged_iter() == 0
    paths.metrics.write_text(json.dumps({"iter": 5}) + "\n" + json.dumps({"iter": 10}) + '\n{"it')
    assert paths.last_logged_iter() == 10


def test_comparable_config_drops_only_sampler_name_seed_and_what_the_regime_sets() -> None:
    a = {"sampler": {"name": "ohem", "batch_rois": 128}, "train": {"seed": 1, "lr": 0.001}}
    b = {"sampler": {"name": "hnm", "batch_rois": 128}, "train": {"seed": 7, "lr": 0.001}}
    assert comparable_config(a) == comparable_config(b) and a["sampler"]["name"] == "ohem"
    assert setting_hash(a) == setting_hash(b)
    c = {"sampler": {"name": "hnm", "fg_thresh": 0.6}, "train": {"seed": 7, "lr": 0.001}}
    assert setting_hash(c) != setting_hash(a)
    # the reference regime sets each sampler's budget (ohem-mmdet 512 per image): not a setting
    d = {"sampler": {"name": "ohem-mmdet", "batch_rois": 1024}, "train": {"seed": 1, "lr": 0.001}}
    assert setting_hash(d) == setting_hash(a)
    # under the common regime the budget is the compare's own
    common = {"sampler": {"regime": "common", "batch_rois": 64}, "train": {"lr": 0.001}}
    assert setting_hash(common) != setting_hash({**common, "sampler": {"regime": "common"}})


def test_a_key_added_later_counts_as_its_default() -> None:
    from ohemcli.config import ExperimentConfig, config_to_dict

    new = config_to_dict(ExperimentConfig())
    old = json.loads(json.dumps(new))
    del old["sampler"]["libra_bins"], old["sampler"]["focal_gamma"]  # a folder from before them
    assert comparable_config(old) == comparable_config(new)
    assert first_difference(comparable_config(old), comparable_config(new)) is None
    new["sampler"]["libra_bins"] = "paper"  # not the default: a different setting
    assert first_difference(comparable_config(old), comparable_config(new)) == (
        "sampler.libra_bins", "reference", "paper",
    )  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_every_name_matches_as_a_path(name: str) -> None:
    assert PATH_LIKE.match(name) and PATH_LIKE.match(f"runs/*/{name}")
    assert not PATH_LIKE.match(f"see {name} for details")


def test_first_difference_names_the_dotted_key() -> None:
    saved = {"train": {"lr": 0.005, "iters": 8}, "data": {"scale": 600}}
    assert first_difference(saved, json.loads(json.dumps(saved))) is None
    now = {"train": {"lr": 0.01, "iters": 9}, "data": {"scale": 600}}
    assert first_difference(saved, now) == ("train.lr", 0.005, 0.01)
    assert first_difference(saved, {**saved, "model": {"roi_op": "align"}}) == (
        "model",
        None,
        {"roi_op": "align"},
    )
    # keys named first are checked first, whatever the dicts' order
    assert first_difference(saved, now, first=("train.iters",)) == ("train.iters", 8, 9)
