"""A sampler variant against its default, paired by seed with the report's bootstrap (issue 9).

    python3 benchmarks/sampler_variants.py runs/bccd5 \\
        hnm-replace=runs/bccd-hnm-replace ohem-image=runs/bccd-ohem-image

The first folder holds the default runs (a compare of fixed, hnm and ohem); each ``LABEL=FOLDER``
holds the runs of one variant (``--hnm-pool replace``, ``--ohem-nms-scope image``, ...). The
variant's runs are renamed ``LABEL`` and paired with the default runs of the same seeds, then
summarised and paired exactly as ``ohem report`` does: mean mAP over seeds, s/iter, mining share,
and every pair's Δ mAP with the paired bootstrap over test images and seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohemcli.report.pairs import pair_table  # noqa: E402
from ohemcli.report.tables import (  # noqa: E402
    formatted,
    formatted_pairs,
    markdown_table,
    read_runs,
    runs_table,
    summary_table,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("default", type=Path, help="compare folder with the default runs")
    parser.add_argument("variants", nargs="+", help="LABEL=FOLDER, one per variant")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    variants = []
    for item in args.variants:
        label, _, folder = item.partition("=")
        for run in read_runs([folder]):
            variants.append(dataclasses.replace(run, summary={**run.summary, "sampler": label}))
    seeds = {r.seed for r in variants}
    runs = [r for r in read_runs([args.default]) if r.seed in seeds] + variants
    results = runs_table(runs)
    summary = summary_table(results)
    mining, total = summary["mining_s"], summary["total_s"]
    share = [f"{m / t:.0%}" if t else "—" for m, t in zip(mining, total, strict=True)]
    shown = formatted(summary.drop(columns=["time_to_target"])).assign(**{"mining share": share})
    print(f"Seeds {', '.join(map(str, sorted(seeds)))}.\n")
    print(markdown_table(shown))
    print(markdown_table(formatted_pairs(pair_table(runs, args.bootstrap))))


if __name__ == "__main__":
    main()
