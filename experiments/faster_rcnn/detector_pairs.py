"""One table of the same samplers under both detectors, with every pair's paired interval.

``ohem report`` pairs samplers within one setting, and refuses one sampler and seed twice; this
script reads a fast-rcnn compare and a faster-rcnn compare of the same data and seeds, names each
run ``<sampler> (<detector>)``, and hands them to the report's own analysis (the paired bootstrap
over test images and seeds), so that "fixed (faster-rcnn) − fixed (fast-rcnn)" gets an interval
like any pair. Both compares must score the same test images.

    python experiments/faster_rcnn/detector_pairs.py runs/bccd8 runs/bccd_faster \
        --samplers fixed,hnm,ohem
"""

from __future__ import annotations

import argparse
import dataclasses

import pandas as pd

from ohemcli.report import tables
from ohemcli.report.analysis import analyse
from ohemcli.report.pairs import sampler_rank


def _parts(name: str) -> tuple[str, str]:
    sampler, _, detector = name.partition(" (")
    return sampler, detector.rstrip(")")


def shown_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs within one detector, and each sampler's faster-rcnn − fast-rcnn (the rest, a
    sampler under one detector against another sampler under the other, answer nothing)."""
    rows = []
    for row in pairs.to_dict("records"):
        (sa, da), (sb, db) = _parts(row["a"]), _parts(row["b"])
        if da == db and sampler_rank(sa) < sampler_rank(sb):  # as the report: ohem − fixed
            rows.append(turned(row))
        elif da == db or (sa == sb and da == "faster-rcnn"):
            rows.append(row)
        elif sa == sb:  # as faster − fast
            rows.append(turned(row))
    return pd.DataFrame(rows)


def turned(row: dict) -> dict:
    """``b − a`` from ``a − b``: the Δ and its interval change sign, better and worse swap."""
    out = {**row, "a": row["b"], "b": row["a"], "delta": -row["delta"],
           "ci_low": -row["ci_high"], "ci_high": -row["ci_low"]}  # fmt: skip
    out["verdict"] = verdict_text(row)
    return out


def verdict_text(row: dict) -> str:
    """The report's verdict of a pair turned round (better and worse swap)."""
    swapped = {"better": "worse", "worse": "better"}
    word, _, rest = str(row["verdict"]).partition(" ")
    return f"{swapped.get(word, word)} {rest}".strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fast", help="a fast-rcnn compare folder")
    parser.add_argument("faster", help="a faster-rcnn compare folder")
    parser.add_argument("--samplers", default="fixed,hnm,ohem")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    keep = args.samplers.split(",")
    runs = []
    for folder in (args.fast, args.faster):
        for run in tables.read_runs([folder]):
            if run.sampler not in keep:
                continue
            detector = run.summary.get("detector") or "fast-rcnn"
            summary = {**run.summary, "sampler": f"{run.sampler} ({detector})"}
            runs.append(dataclasses.replace(run, summary=summary))
    a = analyse(runs, bootstrap=args.bootstrap, all_pairs=True)
    print(tables.markdown_table(tables.formatted(a.summary)))
    print(tables.markdown_table(tables.formatted_pairs(shown_pairs(a.pairs))))
    for line in a.stability_warnings:
        print(line)


if __name__ == "__main__":
    main()
