"""Table and statistics maths on hand-made results, and rendering of hand-made run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.errors import UserError
from ohemcli.report import tables
from ohemcli.report.plots import PLOTS
from ohemcli.report.render import write_report


def make_results(
    maps: dict[str, list[float]], s_per_iter: dict[str, float] | None = None
) -> pd.DataFrame:
    """One row per (sampler, seed); seeds are 1..n in list order."""
    rows = []
    for sampler, values in maps.items():
        for seed, value in enumerate(values, start=1):
            rows.append(
                {
                    "sampler": sampler, "seed": seed, "mAP": value, "train_seconds": 10.0 * seed,
                    "mining_seconds": 2.0 if sampler == "hnm" else 0.0,
                    "total_seconds": 10.0 * seed + (2.0 if sampler == "hnm" else 0.0),
                    "s_per_iter": (s_per_iter or {}).get(sampler, 0.1),
                    "peak_memory_mb": 100.0, "fg_fraction": 0.25, "setting": "abc",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def row(summary: pd.DataFrame, sampler: str) -> pd.Series:
    return summary.set_index("sampler").loc[sampler]


def test_one_seed_gives_deltas_ratios_and_says_it_cannot_tell() -> None:
    results = make_results(
        {"ohem": [0.55], "fixed": [0.50], "hnm": [0.52]}, {"fixed": 0.1, "ohem": 0.15, "hnm": 0.1}
    )
    summary = tables.summary_table(results)
    assert list(summary.columns) == tables.SUMMARY_COLUMNS
    assert list(summary["sampler"]) == ["fixed", "hnm", "ohem"]
    ohem, hnm, fixed = row(summary, "ohem"), row(summary, "hnm"), row(summary, "fixed")
    assert ohem["delta_mAP"] == pytest.approx(0.05)
    assert hnm["delta_mAP"] == pytest.approx(0.02)
    assert fixed["delta_mAP"] == 0.0 and fixed["verdict"] == "baseline"
    assert ohem["s_per_iter_ratio"] == pytest.approx(1.5)
    assert hnm["mining_s"] == 2.0 and hnm["total_s"] == 12.0
    assert ohem["fg_pct"] == pytest.approx(25.0) and ohem["runs"] == 1
    assert math.isnan(ohem["mAP_std"]) and math.isnan(ohem["delta_std"])
    assert ohem["verdict"] == tables.ONE_SEED
    text = tables.verdict_text(results, summary)
    assert "One seed cannot tell a Δ from seed-to-seed noise" in text
    assert "better than fixed" not in text


def test_several_seeds_real_win_is_called_better() -> None:
    fixed = [0.50, 0.60, 0.55]
    ohem = [0.530, 0.631, 0.579]  # Δ = 0.030, 0.031, 0.029
    summary = tables.summary_table(make_results({"fixed": fixed, "ohem": ohem}))
    r = row(summary, "ohem")
    assert r["mAP"] == pytest.approx(sum(ohem) / 3)
    assert r["mAP_std"] == pytest.approx(pd.Series(ohem).std(ddof=1))
    assert r["delta_mAP"] == pytest.approx(0.030)
    assert r["delta_std"] == pytest.approx(0.001)
    assert r["runs"] == 3 and r["paired"] == 3
    assert r["verdict"] == "better than fixed (3 seeds)"


def test_several_seeds_consistent_loss_is_called_worse() -> None:
    summary = tables.summary_table(make_results({"fixed": [0.5, 0.6], "hnm": [0.48, 0.5801]}))
    assert row(summary, "hnm")["verdict"] == "worse than fixed (2 seeds)"


@pytest.mark.parametrize(
    "deltas",
    [
        [0.03, -0.02, 0.01],  # signs disagree
        [0.001, 0.05],  # same sign, but the spread is as large as the mean
        [0.02, 0.01, 0.03, -0.001],  # one seed the other way
        [0.0, 0.0],  # no difference at all
    ],
)
def test_noise_is_never_a_win(deltas: list[float]) -> None:
    fixed = [0.5 + 0.05 * i for i in range(len(deltas))]
    summary = tables.summary_table(
        make_results({"fixed": fixed, "ohem": [f + d for f, d in zip(fixed, deltas, strict=True)]})
    )
    assert row(summary, "ohem")["verdict"].startswith("within noise")


def test_paired_verdict_edges() -> None:
    assert tables.paired_verdict([]) == "no fixed run with the same seed"
    assert tables.paired_verdict([0.2]) == tables.ONE_SEED
    assert tables.paired_verdict([0.05, 0.05]) == "better than fixed (2 seeds)"  # zero spread


def test_deltas_pair_by_seed_not_by_position() -> None:
    results = make_results({"fixed": [0.5, 0.7], "ohem": [0.52, 0.72]})
    results = results[~((results["sampler"] == "ohem") & (results["seed"] == 1))]
    r = row(tables.summary_table(results), "ohem")
    assert r["paired"] == 1 and r["delta_mAP"] == pytest.approx(0.02)
    unpaired = make_results({"fixed": [0.5]}).assign(seed=1)
    unpaired = pd.concat([unpaired, make_results({"ohem": [0.6]}).assign(seed=2)])
    r = row(tables.summary_table(unpaired), "ohem")
    assert r["paired"] == 0 and math.isnan(r["delta_mAP"])
    assert r["verdict"] == "no fixed run with the same seed"


def test_without_fixed_there_is_no_delta() -> None:
    summary = tables.summary_table(make_results({"ohem": [0.5, 0.6], "hnm": [0.4, 0.5]}))
    assert set(summary["verdict"]) == {"no fixed baseline"}
    assert summary["s_per_iter_ratio"].isna().all()
    assert "No fixed run" in tables.verdict_text(make_results({"ohem": [0.5]}), summary)


def test_renderers() -> None:
    results = make_results({"fixed": [0.5], "ohem": [0.55]})
    summary = tables.summary_table(results)
    shown = tables.formatted(summary)
    assert list(shown.loc[1, ["Δ mAP vs fixed", "mAP std"]]) == ["+0.0500", "—"]
    md = tables.markdown_table(shown).splitlines()
    assert md[0].startswith("| sampler | mAP |") and md[1].startswith("|---|")
    assert len(md) == 4
    payload = json.loads(tables.to_json(results, summary, "v"))
    assert payload["summary"][1]["mAP_std"] is None and payload["verdict"] == "v"
    assert tables.summary_csv(summary).splitlines()[0] == ",".join(tables.SUMMARY_COLUMNS)
    assert tables.rich_table(summary).row_count == 2


def fake_run(root: Path, sampler: str, seed: int, mAP: float) -> Path:
    """A finished run folder as engine.train leaves it (summary, config, metrics, evals)."""
    run = root / f"{sampler}-s{seed}"
    run.mkdir(parents=True)
    cfg = config_to_dict(ExperimentConfig())
    cfg["sampler"]["name"], cfg["train"]["seed"] = sampler, seed
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    history = [
        {"iter": i, "mAP": mAP * i / 4, "train_seconds": i, "mining_seconds": 0, "wall_seconds": i}
        for i in (2, 4)
    ]
    summary = {
        "sampler": sampler, "data": "synth", "seed": seed, "iters": 4, "metric": "voc07",
        "mAP": mAP, "AP": {"disc": mAP, "ring": mAP / 2}, "train_seconds": 4.0,
        "mining_seconds": 0.0, "eval_seconds": 1.0, "total_seconds": 4.0, "readonly_seconds": 0.0,
        "s_per_iter": 1.0, "mining_passes": 0, "fg_fraction": 0.25, "peak_memory_mb": 50.0,
        "device": "cpu", "machine": "x86_64 Linux, 2 threads", "eval_history": history,
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    lines = [{"iter": i, "loss": 1.0 / i, "fg_fraction": 0.25} for i in (2, 4, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def test_load_runs_from_compare_and_run_folders(tmp_path: Path) -> None:
    cmp = tmp_path / "cmp"
    for sampler, value in (("ohem", 0.4), ("fixed", 0.3)):
        fake_run(cmp / "runs", sampler, 1, value)
    loose = fake_run(tmp_path / "loose", "hnm", 1, 0.35)
    results = tables.load_runs([cmp, loose])
    assert list(results["sampler"]) == ["fixed", "hnm", "ohem"]
    assert set(tables.RUN_COLUMNS) <= set(results.columns)
    assert list(results["AP/ring"]) == pytest.approx([0.15, 0.175, 0.2])
    assert results["setting"].nunique() == 1
    with pytest.raises(UserError, match="appear twice"):
        tables.load_runs([cmp, cmp / "runs" / "ohem-s1"])
    with pytest.raises(UserError, match="neither a run folder"):
        tables.load_runs([tmp_path])


def test_write_report_on_fake_runs(tmp_path: Path) -> None:
    for sampler, value in (("fixed", 0.3), ("ohem", 0.4)):
        fake_run(tmp_path / "runs", sampler, 1, value)
    results = tables.load_runs([tmp_path])
    write_report(tmp_path, results)
    for name in PLOTS:
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "![map_vs_time](plots/map_vs_time.png)" in report
    assert "One seed cannot tell" in report and "```yaml" in report and "- torch:" in report
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == tables.SUMMARY_COLUMNS
    assert summary["delta_mAP"].tolist() == pytest.approx([0.0, 0.1])
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2
    assert not list(tmp_path.glob("**/*.tmp"))
