"""How long does the paired bootstrap over test images take on a VOC07-sized test set?

    python benchmarks/bench_bootstrap.py [--resamples 1000] [--seeds 1]

Builds the in-memory VOC07-sized set of ``bench_metrics.py`` (4,952 images, 20 classes, 100
detections per image) and, for each sampler and seed, a detection set of its own (the same boxes
with noisy scores), evaluates each once and keeps its matches, then times ``weighted_map`` on
``--resamples``
resamples of the test images per run and the whole ``pair_table`` (two samplers: ohem and hnm).
It also checks that a resample of all ones gives each run's mAP. Wall and CPU seconds are both
printed: on a shared machine the CPU figure is the one that does not depend on the load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for benchmarks.bench_metrics

from benchmarks.bench_metrics import make_set  # noqa: E402
from ohemcli.data.voc import VOC_CLASSES  # noqa: E402
from ohemcli.evaluation.matches import (  # noqa: E402
    matches_from_result,
    run_matches,
    save_matches,
    weighted_map,
)
from ohemcli.evaluation.results_files import ClassDetections, Detections  # noqa: E402
from ohemcli.evaluation.voc_ap import evaluate_voc  # noqa: E402
from ohemcli.report.pairs import pair_table  # noqa: E402
from ohemcli.runs.paths import ComparePaths  # noqa: E402
from ohemcli.runs.records import read_run  # noqa: E402
from tests.report.fake_runs import fake_run  # noqa: E402


def perturbed(dets: Detections, rng: np.random.Generator, noise: float) -> Detections:
    """The same boxes with noisy scores: another ranking, so another AP."""
    return {
        name: ClassDetections(cd.image_ids, cd.scores + rng.normal(0, noise, len(cd)), cd.boxes)
        for name, cd in dets.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = ComparePaths(Path(tmp))
        records, base = make_set(0)
        for k, (sampler, seed) in enumerate(
            (s, seed) for seed in range(1, args.seeds + 1) for s in ("ohem", "hnm")
        ):
            dets = perturbed(base, np.random.default_rng(k), 0.05 if sampler == "ohem" else 0.15)
            result = evaluate_voc(dets, records, VOC_CLASSES, "voc07")
            paths = fake_run(out.root / "runs", sampler, seed, result.mAP, AP=result.ap)
            m = matches_from_result(result, [r.image_id for r in records])
            paths.eval_dir.mkdir()
            save_matches(paths.matches, m)
            assert abs(weighted_map(m, np.ones((1, len(records))))[0] - result.mAP) < 1e-12
        runs = [read_run(p) for p in out.finished_runs()]
        n_dets = len(run_matches(runs[0]).tp)  # type: ignore[union-attr]
        print(f"{len(records)} images, {n_dets} detections per run, {len(runs)} runs")

        m = run_matches(runs[0])
        weights = np.random.default_rng(0).multinomial(
            len(records), np.full(len(records), 1 / len(records)), size=args.resamples
        )
        t0, c0 = time.perf_counter(), time.process_time()
        weighted_map(m, weights)  # type: ignore[arg-type]
        one, one_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"weighted_map, {args.resamples} resamples, one run: {one:.2f} s ({one_cpu:.2f} s CPU)"
        )

        t0, c0 = time.perf_counter(), time.process_time()
        table = pair_table(runs, args.resamples)
        whole, whole_cpu = time.perf_counter() - t0, time.process_time() - c0
        row = table.iloc[0]
        print(
            f"pair_table ({len(runs)} runs, {args.resamples} resamples): {whole:.2f} s "
            f"({whole_cpu:.2f} s CPU); "
            f"{row['a']} - {row['b']} = {row['delta']:+.4f} [{row['ci_low']:+.4f}, "
            f"{row['ci_high']:+.4f}]"
        )


if __name__ == "__main__":
    main()
