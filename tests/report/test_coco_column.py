"""The report's "COCO AP" column: read from a final evaluation, shown only when measured."""

from __future__ import annotations

import math

import pytest

from ohemcli.report import tables
from tests.report.test_tables import make_results


def test_coco_ap_is_found_under_each_metric_shape():
    assert tables.coco_ap({"metric": "voc07", "coco": {"AP": 0.25}}) == 0.25  # a COCO set
    assert tables.coco_ap({"metric": "all", "metrics": {"coco": {"coco": {"AP": 0.5}}}}) == 0.5
    assert math.isnan(tables.coco_ap({"metric": "voc07", "mAP": 0.7}))
    assert math.isnan(tables.coco_ap(None)) and math.isnan(tables.coco_ap({"coco": {"AP": None}}))


def test_the_summary_shows_coco_ap_only_when_runs_measured_it():
    results = make_results({"fixed": [0.5, 0.6], "ohem": [0.55, 0.65]})
    assert "coco_AP" not in tables.summary_table(results).columns
    results["coco_AP"] = [0.20, 0.30, 0.25, math.nan]  # ohem seed 2 did not measure it
    summary = tables.summary_table(results)
    columns = list(summary.columns)
    assert columns[columns.index("mAP_std") + 1] == "coco_AP"
    by = summary.set_index("sampler")["coco_AP"]
    assert by["fixed"] == pytest.approx(0.25) and by["ohem"] == pytest.approx(0.25)
    assert "COCO AP" in tables.formatted(summary).columns
