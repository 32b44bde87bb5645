"""``ohem report`` counts only runs whose files pass their checks (report.validate)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ohemcli.errors import UserError
from ohemcli.evaluation.matches import load_matches, rescored_map
from ohemcli.report.analysis import analyse, analyse_folders
from ohemcli.runs.paths import RunPaths
from tests.report.fake_runs import detections, evaluated_run, voc_test_set

RECORDS = voc_test_set(12)


def good(records, rng):
    return detections(records, rng, (0.6, 1.0), (0.0, 0.4))


def mediocre(records, rng):
    return detections(records, rng, (0.2, 0.8), (0.3, 0.9))


@pytest.fixture()
def folder(tmp_path: Path) -> dict[str, float]:
    """A compare folder of ohem (good) and hnm (mediocre) over seeds 1, 2, 3; name -> mAP."""
    maps = {}
    for seed in (1, 2, 3):
        maps[f"ohem-s{seed}"] = evaluated_run(tmp_path / "runs", "ohem", seed, good, RECORDS)
        maps[f"hnm-s{seed}"] = evaluated_run(tmp_path / "runs", "hnm", seed, mediocre, RECORDS)
    return maps


def _edit_summary(path: Path, **changes) -> None:
    summary = json.loads(path.read_text())
    path.write_text(json.dumps(summary | changes))


def _edit_matches(path: Path, edit) -> None:
    with np.load(path) as z:
        arrays = dict(z)
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_untouched_matches_rescore_to_the_recorded_map(tmp_path, folder) -> None:
    for name, recorded in folder.items():
        m = load_matches(RunPaths(tmp_path / "runs" / name).matches)
        assert abs(rescored_map(m) - recorded) < 1e-12


@pytest.mark.parametrize("bad", [float("nan"), None, "abc", 1.5, True])
def test_a_run_without_a_usable_map_never_enters_a_mean(tmp_path, folder, bad) -> None:
    _edit_summary(tmp_path / "runs/hnm-s1/summary.json", mAP=bad)
    a = analyse_folders([tmp_path], bootstrap=100)
    hnm = a.summary.set_index("sampler").loc["hnm"]
    assert hnm["runs"] == 2  # the runs column counts only the runs used
    assert hnm["mAP"] == pytest.approx((folder["hnm-s2"] + folder["hnm-s3"]) / 2)
    pair = a.pairs.iloc[0]
    assert pair["seeds"] == 2
    expected = np.mean([folder[f"ohem-s{s}"] - folder[f"hnm-s{s}"] for s in (2, 3)])
    assert pair["delta"] == pytest.approx(expected)
    assert len(a.left_out) == 1 and "hnm-s1" in a.left_out[0] and "mAP" in a.left_out[0]


def _flip_first_tp(arrays) -> None:
    """A consistent edit: the first true positive becomes a false positive."""
    k = int(np.flatnonzero(arrays["tp"])[0])
    arrays["tp"][k], arrays["fp"][k] = False, True


def _all_tp(arrays) -> None:
    arrays["tp"], arrays["fp"] = np.ones_like(arrays["tp"]), np.zeros_like(arrays["fp"])


@pytest.mark.parametrize(
    "edit, says",
    [
        (_flip_first_tp, "rescores to mAP"),
        (lambda a: a.__setitem__("det_class", a["det_class"] - 1), "det_class must lie in"),
        (lambda a: a["det_image"].__setitem__(0, 999), "det_image must lie in"),
        (lambda a: a.__setitem__("det_image", a["det_image"] + 0.5), "whole numbers"),
        (lambda a: a.__setitem__("tp", a["tp"][:-1]), "one value per detection"),
        (_all_tp, "true positives than"),
        (lambda a: a.__setitem__("positives", -a["positives"]), "none negative"),
        (lambda a: a.__setitem__("tp", np.full(len(a["tp"]), 2)), "flags"),
    ],
)
def test_an_edited_matches_file_is_left_out_with_one_line(tmp_path, folder, edit, says) -> None:
    _edit_matches(RunPaths(tmp_path / "runs/ohem-s2").matches, edit)
    a = analyse_folders([tmp_path], bootstrap=100)
    assert len(a.left_out) == 1 and says in a.left_out[0]
    assert "ohem-s2" in a.left_out[0]
    assert a.pairs.iloc[0]["seeds"] == 2
    assert "ohem-s2" not in set(a.results["run"])


def test_a_truncated_or_pickled_matches_file_is_left_out(tmp_path, folder) -> None:
    path = RunPaths(tmp_path / "runs/hnm-s3").matches
    path.write_bytes(path.read_bytes()[:100])
    _edit_matches(
        RunPaths(tmp_path / "runs/hnm-s2").matches,
        lambda a: a.__setitem__("fp", np.array([object()] * len(a["fp"]))),
    )
    a = analyse_folders([tmp_path], bootstrap=100)
    assert len(a.left_out) == 2 and a.pairs.iloc[0]["seeds"] == 1


@pytest.mark.parametrize(
    "file, text, says",
    [
        ("summary.json", "[1, 2]", "found list"),
        ("summary.json", '{"sampler": "hnm", "seed": "x", "mAP": 0.5}', "seed = 'x'"),
        ("evals.jsonl", "3\n", "expected a JSON object"),
        ("evals.jsonl", '{"iter": 2, "mAP": "abc"}\n', "mAP = 'abc'"),
        ("summary.json", "{not json", "not valid JSON"),
    ],
)
def test_a_run_file_that_does_not_read_is_left_out(tmp_path, folder, file, text, says) -> None:
    (tmp_path / "runs/hnm-s1" / file).write_text(text)
    a = analyse_folders([tmp_path], bootstrap=100)
    assert len(a.left_out) == 1 and says in a.left_out[0] and file in a.left_out[0]
    assert a.summary.set_index("sampler").loc["hnm", "runs"] == 2


def test_nothing_left_is_one_error_line(tmp_path, folder) -> None:
    run = tmp_path / "runs/hnm-s1"
    _edit_summary(run / "summary.json", mAP=None)
    with pytest.raises(UserError, match="no other run to report") as info:
        analyse_folders([run])
    assert "\n" not in str(info.value)


def test_analyse_itself_checks_runs_given_to_it(tmp_path, folder) -> None:
    from ohemcli.runs.records import read_run

    _edit_matches(RunPaths(tmp_path / "runs/ohem-s1").matches, _flip_first_tp)
    runs = [read_run(p) for p in sorted((tmp_path / "runs").iterdir())]
    a = analyse(runs, bootstrap=50)
    assert len(a.runs) == 5 and a.pairs.iloc[0]["seeds"] == 2


def _append_evals(path: Path, lines: list[dict]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(x) + "\n" for x in lines)


def test_evaluations_past_the_runs_budget_leave_the_run_out(tmp_path, folder) -> None:
    """Lines appended past the run's 4 iterations would move its settled window (a crafted
    history flipped a verdict): the run is left out, naming the file and the iteration."""
    evals = tmp_path / "runs/hnm-s1/evals.jsonl"
    _append_evals(evals, [{"iter": i, "mAP": 0.06, "train_seconds": i, "mining_seconds": 0,
                           "wall_seconds": i} for i in (5, 6, 7)])  # fmt: skip
    a = analyse_folders([tmp_path], bootstrap=0)
    assert a.left_out == [
        f"run hnm-s1 left out: {evals}: an evaluation at iteration 7, past the run's 4 "
        "iterations in summary.json"
    ]
    assert a.summary.set_index("sampler").loc["hnm", "runs"] == 2


def test_a_last_evaluation_that_disagrees_with_the_summary_leaves_the_run_out(
    tmp_path, folder
) -> None:
    evals = tmp_path / "runs/ohem-s2/evals.jsonl"
    _append_evals(
        evals,
        [{"iter": 4, "mAP": 0.06, "train_seconds": 4, "mining_seconds": 0, "wall_seconds": 4}],
    )  # fmt: skip  (read_log keeps the last of iter 4)
    a = analyse_folders([tmp_path], bootstrap=0)
    assert a.left_out == [
        f"run ohem-s2 left out: {evals}: its last evaluation (iteration 4) has mAP 0.06, the "
        f"run recorded {folder['ohem-s2']:.6f} in summary.json"
    ]
