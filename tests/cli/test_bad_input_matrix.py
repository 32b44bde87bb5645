"""Bad input at the real command line: one stderr line, exit 2, no traceback, nothing changed.

Each row builds its own folder, runs ``python -m ohemcli`` in a subprocess (two at a time), and
the test then compares a snapshot of the folder before and after. A row is
``(name, setup)``, where ``setup(ws, base)`` prepares the workspace ``ws`` and returns the
arguments, extra environment and working directory of the run, and the text the line must hold.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_voc_root

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    args: list[str]
    expect: str  # text the one stderr line must hold
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def _config(ws: Path, data: Path, **changes) -> Path:
    raw = {
        "data": {"root": str(data), "scale": 64, "max_size": 64, "max_proposals": 40},
        "data_workers": 0,
        "model": {"backbone": "tiny", "head_dim": 16},
        "sampler": {"batch_rois": 8},
        "train": {"iters": 2, "lr_steps": [], "log_every": 1, "checkpoint_every": 1},
    }
    raw["data"]["workers"] = raw.pop("data_workers")
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = value
    path = ws / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bad_value(key: str, value, expect: str):
    def setup(ws: Path, base: dict) -> Case:
        cfg = _config(ws, base["data"], **{key: value})
        return Case(["train", "--config", str(cfg), "--out", str(ws / "run")], expect)

    return setup


def _yaml_text(text: bytes, expect: str):
    def setup(ws: Path, base: dict) -> Case:
        (ws / "c.yaml").write_bytes(text)
        return Case(["train", "--config", str(ws / "c.yaml"), "--out", str(ws / "run")], expect)

    return setup


def _train(ws: Path, base: dict, *extra: str, out: Path | None = None) -> list[str]:
    # The finished base run's settings, so that a resume reaches the checkpoint checks.
    cfg = _config(ws, base["data"], **{"sampler.mine_every": 1})
    return ["train", "--config", str(cfg), "--out", str(out or ws / "run"), *extra]


def _finished_run(ws: Path, base: dict) -> Path:
    run = ws / "run"
    shutil.copytree(base["run"], run)
    return run


def out_is_a_file(ws, base):
    (ws / "run").write_text("x")
    return Case(_train(ws, base), "not a folder")


def out_under_a_file(ws, base):
    (ws / "f").write_text("x")
    return Case(_train(ws, base, out=ws / "f" / "run"), "is not a folder")


def out_read_only(ws, base):
    return Case(_train(ws, base, out=base["readonly"] / "run"), str(base["readonly"]))


def cache_is_a_file(ws, base):
    (ws / "cache").write_text("x")
    return Case(_train(ws, base), "OHEM_CACHE", env={"OHEM_CACHE": str(ws / "cache")})


def cache_read_only(ws, base):
    return Case(_train(ws, base), "OHEM_CACHE", env={"OHEM_CACHE": str(base["readonly"])})


def cwd_read_only(ws, base):
    cfg = _config(ws, base["data"])
    return Case(["train", "--config", str(cfg)], "runs", cwd=base["readonly"])


def resume_other_sampler(ws, base):
    run = _finished_run(ws, base)
    args = [*_train(ws, base, "--resume", "--iters", "3", out=run), "--sampler", "fixed"]
    return Case(args, "sampler.name = 'hnm'")


def resume_pt_without_model(ws, base):
    import torch

    run = _finished_run(ws, base)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    del state["model"]
    torch.save(state, run / "checkpoint.pt")
    return Case(_train(ws, base, "--resume", "--iters", "3", "--sampler", "hnm", out=run), "model")


def resume_unsafe_pickle(ws, base):
    import pickle

    run = _finished_run(ws, base)
    (run / "checkpoint.pt").write_bytes(pickle.dumps(Case([], "")))
    args = _train(ws, base, "--resume", "--iters", "3", "--sampler", "hnm", out=run)
    return Case(args, "checkpoint.pt")


def resume_corrupt_summary(ws, base):
    run = _finished_run(ws, base)
    (run / "summary.json").write_text("{not json")
    return Case(_train(ws, base, "--resume", "--sampler", "hnm", out=run), "summary.json")


def resume_summary_with_map_abc(ws, base):
    """A finished run is reused only when its summary reads as the report would read it."""
    run = _finished_run(ws, base)
    _summary_with(mAP="abc")(run)
    return Case(_train(ws, base, "--resume", "--sampler", "hnm", out=run), "mAP = 'abc'")


def report_corrupt_summary(ws, base):
    run = _finished_run(ws, base)
    (run / "summary.json").write_text("{not json")
    return Case(["report", str(run)], "summary.json")


def _report_edited(edit, expect: str):
    """``ohem report`` of a lone finished run whose file ``edit(run)`` broke: one line, exit 2."""

    def setup(ws: Path, base: dict) -> Case:
        run = _finished_run(ws, base)
        edit(run)
        return Case(["report", str(run), "--no-plots"], expect)

    return setup


def _summary_with(**changes):
    def edit(run: Path) -> None:
        import json

        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps(summary | changes))

    return edit


def _all_true_positives(run: Path) -> None:
    import numpy as np

    path = run / "eval" / "matches.npz"
    with np.load(path) as z:
        arrays = dict(z)
    arrays["tp"], arrays["fp"] = np.ones_like(arrays["tp"]), np.zeros_like(arrays["fp"])
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _truncated_matches(run: Path) -> None:
    path = run / "eval" / "matches.npz"
    path.write_bytes(path.read_bytes()[:50])


def _compare_folder_with(settings: str):
    def setup(ws: Path, base: dict) -> Case:
        shutil.copytree(base["run"], ws / "cmp" / "runs" / "hnm-s0")
        (ws / "cmp" / "compare.yaml").write_text(settings)
        return Case(["report", str(ws / "cmp"), "--no-plots"], "compare.yaml")

    return setup


def second_writer(ws, base):
    from ohemcli.runs.paths import RunPaths

    run = _finished_run(ws, base)
    (run / "checkpoint.pt").unlink()
    lock = RunPaths(run).lock
    hold = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", hold, str(lock)])
    base["children"].append(child)
    while not (lock.is_file() and lock.read_text().strip() == str(child.pid)):
        time.sleep(0.05)
    return Case(_train(ws, base, "--sampler", "hnm", out=run), f"pid {child.pid}, running")


def results_path_is_a_folder(ws, base):
    dets = ws / "dets"
    (dets / "comp4_det_test_thing.txt").mkdir(parents=True)
    args = ["eval", "--detections", str(dets), "--data", str(base["data"]), "--split", "test"]
    return Case(args, "comp4_det_test_thing.txt")


def results_path_dangling_link(ws, base):
    dets = ws / "dets"
    dets.mkdir()
    (dets / "comp4_det_test_thing.txt").symlink_to(ws / "gone.txt")
    args = ["eval", "--detections", str(dets), "--data", str(base["data"]), "--split", "test"]
    return Case(args, "comp4_det_test_thing.txt")


def _alias_bomb() -> bytes:
    """382 bytes of YAML that expand to 9**7 items when followed."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 7):
        name, prev = "abcdefg"[i], "abcdefg"[i - 1]
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return ("\n".join(lines) + "\n").encode()


def _root_with_test_split(ws: Path, base: dict, objects: bool) -> Path:
    """A copy of the base root whose test split lists images without objects (or none)."""
    root = ws / "voc"
    shutil.copytree(base["data"], root)
    if objects:
        (root / "ImageSets" / "Main" / "test.txt").write_text("")
        return root
    for name in ("bare0", "bare1"):
        shutil.copy(root / "JPEGImages" / "im000.jpg", root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_text(
            "<annotation><size><width>64</width><height>64</height></size></annotation>"
        )
    (root / "ImageSets" / "Main" / "test.txt").write_text("bare0\nbare1\n")
    return root


def split_without_objects(ws, base):
    cfg = _config(ws, _root_with_test_split(ws, base, objects=False))
    return Case(["train", "--config", str(cfg), "--out", str(ws / "run")], "split 'test'")


def empty_test_split(ws, base):
    cfg = _config(ws, _root_with_test_split(ws, base, objects=True))
    return Case(["train", "--config", str(cfg), "--out", str(ws / "run")], "lists no images")


def cache_under_a_file(ws, base):
    (ws / "f").write_text("x")
    return Case(_train(ws, base), "OHEM_CACHE", env={"OHEM_CACHE": str(ws / "f" / "cache")})


def id_with_whitespace(ws, base):
    root = ws / "voc"
    shutil.copytree(base["data"], root)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("im000 extra\nim001\n")
    cfg = _config(ws, root)
    return Case(["train", "--config", str(cfg), "--out", str(ws / "run")], "'im000 extra'")


def _before_any_data(ws: Path, expect: str, **changes) -> Case:
    # The data root does not exist: an error about the model proves it came first.
    cfg = _config(ws, ws / "no-data-here", **changes)
    return Case(["train", "--config", str(cfg), "--out", str(ws / "run")], expect)


def frozen_convs_beyond_the_trunk(ws, base):
    return _before_any_data(ws, "model.frozen_convs", **{"model.frozen_convs": 6})


def truncated_weights(ws, base):
    import torch

    torch.save({"trunk.0.weight": torch.zeros(16, 3, 3, 3)}, ws / "w.pt")
    data = (ws / "w.pt").read_bytes()
    (ws / "w.pt").write_bytes(data[: len(data) // 2])
    return _before_any_data(ws, "truncated or corrupt", **{"model.weights": str(ws / "w.pt")})


def resume_truncated_checkpoint(ws, base):
    run = _finished_run(ws, base)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    args = _train(ws, base, "--resume", "--iters", "3", "--sampler", "hnm", out=run)
    return Case(args, "truncated or corrupt")


def _compare(ws: Path, base: dict, *extra: str) -> list[str]:
    return ["compare", "--config", str(_config(ws, base["data"])), "--no-progress", *extra]


def compare_seed_negative(ws, base):
    return Case(_compare(ws, base, "--seeds=-1", "--out", str(ws / "cmp")), "--seeds")


def compare_seed_huge(ws, base):
    return Case(_compare(ws, base, "--seeds", str(10**20), "--out", str(ws / "cmp")), "--seeds")


def compare_missing_data_default_out(ws, base):
    # No --out: the default runs/compare-nope under the working folder must not appear either.
    return Case(_compare(ws, base, "--data", str(ws / "nope")), "nope")


def compare_cuda_without_cuda(ws, base):
    args = _compare(ws, base, "--device", "cuda", "--out", str(ws / "cmp"))
    return Case(args, "--device cuda", env={"CUDA_VISIBLE_DEVICES": ""})


def compare_option_out_of_range(ws, base):
    return Case(_compare(ws, base, "--jobs", "0", "--out", str(ws / "cmp")), "--jobs")


def eval_points_above_iters(ws, base):
    return Case(_train(ws, base, "--eval-points", str(10**10)), "--eval-points")


def huge_id_in_results_file(ws, base):
    dets = ws / "dets"
    dets.mkdir()
    (dets / "comp4_det_test_thing.txt").write_text("x" * 100_000 + " 0.9 1 1 9 9\n")
    args = ["eval", "--detections", str(dets), "--data", str(base["data"]), "--split", "test"]
    return Case(args, "is not in the split")


ROWS = {
    "yaml top level is a list": _yaml_text(b"- 1\n- 2\n", "got a list"),
    "yaml section is a scalar": _yaml_text(b"sampler: fixed\n", "section 'sampler'"),
    "yaml not utf-8": _yaml_text("train:\n  iters: 5 # caf\xe9\n".encode("latin-1"), "UTF-8"),
    "iters -5": _bad_value("train.iters", -5, "train.iters = -5"),
    "batch_rois 0": _bad_value("sampler.batch_rois", 0, "sampler.batch_rois"),
    "roi_size 0": _bad_value("model.roi_size", 0, "model.roi_size"),
    "fg_fraction 1.5": _bad_value("sampler.fg_fraction", 1.5, "[0, 1]"),
    "eval.nms 5": _bad_value("eval.nms", 5, "(0, 1]"),
    "scale 0": _bad_value("data.scale", 0, "data.scale"),
    "images_per_batch 0": _bad_value("train.images_per_batch", 0, "train.images_per_batch"),
    "checkpoint_every 0": _bad_value("train.checkpoint_every", 0, "train.checkpoint_every"),
    "eval.metric bogus": _bad_value("eval.metric", "bogus", "voc07"),
    "lr nan": _bad_value("train.lr", float("nan"), "train.lr"),
    "sampler unknown": _bad_value("sampler.name", "random", "sampler.name"),
    "huge input quoted short": _bad_value("eval.metric", "x" * 5000, "eval.metric"),
    "--out is a file": out_is_a_file,
    "--out under a file": out_under_a_file,
    "--out read-only": out_read_only,
    "OHEM_CACHE is a file": cache_is_a_file,
    "OHEM_CACHE read-only": cache_read_only,
    "cwd read-only": cwd_read_only,
    "resume with another sampler": resume_other_sampler,
    "resume a .pt without model": resume_pt_without_model,
    "resume an unsafe pickle": resume_unsafe_pickle,
    "resume with a corrupt summary.json": resume_corrupt_summary,
    "resume a finished run whose summary has mAP abc": resume_summary_with_map_abc,
    "report a corrupt summary.json": report_corrupt_summary,
    "report a summary.json that is a list": _report_edited(
        lambda run: (run / "summary.json").write_text("[1, 2]"), "found list"
    ),
    "report a summary with mAP abc": _report_edited(_summary_with(mAP="abc"), "mAP = 'abc'"),
    "report a summary with mAP null": _report_edited(_summary_with(mAP=None), "mAP = None"),
    "report an evals line that is no object": _report_edited(
        lambda run: (run / "evals.jsonl").write_text("[1]\n"), "evals.jsonl:1"
    ),
    "report all-TP matches": _report_edited(_all_true_positives, "matches.npz"),
    "report truncated matches": _report_edited(_truncated_matches, "matches.npz"),
    "report a corrupt compare.yaml": _compare_folder_with("a: [\n"),
    "report a compare.yaml that is a list": _compare_folder_with("- 1\n"),
    "report --bootstrap 10^9": lambda ws, base: Case(
        ["report", str(_finished_run(ws, base)), "--bootstrap", "1000000000"], "--bootstrap"
    ),
    "a second writer": second_writer,
    "results path is a folder": results_path_is_a_folder,
    "results path is a dangling link": results_path_dangling_link,
    # issue 22
    "yaml alias bomb": _yaml_text(_alias_bomb(), "aliases expand"),
    "test split without objects": split_without_objects,
    "empty test split": empty_test_split,
    "OHEM_CACHE under a file": cache_under_a_file,
    "image id with whitespace": id_with_whitespace,
    "frozen_convs beyond the trunk, before data": frozen_convs_beyond_the_trunk,
    "truncated --weights, before data": truncated_weights,
    "resume a truncated checkpoint": resume_truncated_checkpoint,
    "compare --seeds=-1": compare_seed_negative,
    "compare --seeds 10**20": compare_seed_huge,
    "compare, missing data, default out": compare_missing_data_default_out,
    "compare --device cuda without CUDA": compare_cuda_without_cuda,
    "compare --jobs 0 (click range)": compare_option_out_of_range,
    "--eval-points above the iterations": eval_points_above_iters,
    "a huge image id in a results file": huge_id_in_results_file,
}


def _snapshot(root: Path) -> dict[str, str]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink() or path.is_dir():
                snap[rel] = "link" if path.is_symlink() else "dir"
            else:
                snap[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snap


def _readonly_dir(tmp: Path) -> Path:
    """A folder this process cannot write: chmod 555, or for root (which ignores modes) /sys."""
    path = tmp / "readonly"
    path.mkdir()
    path.chmod(0o555)
    probe = path / "probe"
    try:
        probe.mkdir()
    except OSError:
        return path
    probe.rmdir()
    sys_probe = Path("/sys") / f"ohem-{uuid.uuid4().hex}"
    try:
        sys_probe.mkdir()
    except OSError:
        return Path("/sys")
    sys_probe.rmdir()
    pytest.skip("no folder that this user cannot write (root without a read-only /sys)")


def run_rows(rows: dict, tmp: Path, base: dict) -> dict:
    """Run each row's command as ``python -m ohemcli``, two at a time, each in a fresh
    workspace under ``tmp``; name -> (case, completed process, files before, files after)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env["OHEM_CACHE"] = str(tmp / "cache")

    def one(name: str):
        ws = tmp / f"ws{abs(hash(name))}"
        ws.mkdir()
        case = rows[name](ws, base)
        before = _snapshot(ws)
        proc = subprocess.run(
            [sys.executable, "-m", "ohemcli", *case.args],
            capture_output=True,
            text=True,
            env={**env, **case.env},
            cwd=case.cwd or ws,
            timeout=300,
        )
        return name, (case, proc, before, _snapshot(ws))

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, rows))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every row, two at a time; name -> (case, completed process, before, after)."""
    from ohemcli.config import load_config
    from ohemcli.engine.train import train

    tmp = tmp_path_factory.mktemp("matrix")
    data = tiny_voc_root(tmp, num_images=4)
    cfg_path = _config(tmp, data, **{"sampler.name": "hnm", "sampler.mine_every": 1})
    run = tmp / "finished"
    train(load_config(cfg_path), run, show_progress=False)
    base = {"data": data, "run": run, "readonly": _readonly_dir(tmp), "children": []}
    try:
        done = run_rows(ROWS, tmp, base)
    finally:
        for child in base["children"]:
            child.kill()
            child.wait()
    return done


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(results, name):
    case, proc, before, after = results[name]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(lines) == 1, proc.stderr
    assert case.expect in lines[0], lines[0]
    assert "weights_only" not in lines[0]
    assert len(lines[0]) < 600
    assert before == after
