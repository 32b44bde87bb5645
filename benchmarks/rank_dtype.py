"""How much does ranking in bfloat16 change what a sampler chooses, and what does it save?

    OMP_NUM_THREADS=1 python benchmarks/rank_dtype.py [--config synth_tiny] [--data ROOT]
        [--sampler ohem] [--iters 100] [--repeats 3] [--timed-iters 10]

1. Overlap: one float32 training run of ``--iters`` iterations; before each step, on the same
   batch and the same weights, the sampler's choice is computed with the read-only pass in
   float32 and in bfloat16 (``rank_check.choice_in``: the RNG is put back, so the run
   trains as it would alone). Prints the mean over iterations of the mean per-image Jaccard
   overlap of the two chosen sets, and its lowest iteration.
2. Cost: ``ohem bench``'s timing (``engine.bench.bench_samplers``) of the sampler with
   ``sampler.rank_dtype`` float32 and bfloat16, alternated ``--repeats`` times in this process
   (so both see the same machine load); prints the median s/iter and read-only s/iter of each.

3. ``--pair F32 BF16``: the mAP pair of two finished compares of the sampler that differ only
   in ``--rank-dtype`` (float32 first): each run's mAP, and bfloat16 − float32 with the report's
   95% interval (bootstrap over test images and seeds) and verdict. Nothing is trained.

--config takes a preset or a YAML file (bccd_tiny with --data /work/shared/data/bccd, say).
bfloat16 matmuls are fast only where the CPU has bf16 units (AVX512-BF16, AMX); elsewhere
autocast may cost more than it saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for benchmarks.rank_check

from benchmarks.rank_check import choice_in, mean_jaccard  # noqa: E402
from ohemcli.cli.overrides import build_config  # noqa: E402
from ohemcli.engine.bench import bench_samplers  # noqa: E402
from ohemcli.engine.train import Trainer  # noqa: E402
from ohemcli.report.pairs import pair_table  # noqa: E402
from ohemcli.runs.records import read_run  # noqa: E402


def overlap(cfg, iters: int) -> list[float]:
    """Per iteration of a float32 run: mean Jaccard of the float32 and bfloat16 choices."""
    cfg = replace(cfg, train=replace(cfg.train, iters=iters, eval_points=0))
    per_image = cfg.sampler.batch_rois // cfg.train.images_per_batch
    values = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), resume=False, show_progress=False)
        trainer.model.train()
        for batch in trainer.batches():
            args = (trainer.model, trainer.sampler, batch, per_image, trainer.gen)
            values.append(mean_jaccard(choice_in(*args, "float32"), choice_in(*args, "bfloat16")))
            trainer.step(batch)
    return values


def cost(cfg, repeats: int, timed_iters: int) -> dict[str, list[dict]]:
    """``bench_samplers`` rows of the sampler per rank dtype, the dtypes alternated."""
    rows: dict[str, list[dict]] = {"float32": [], "bfloat16": []}
    for _ in range(repeats):
        for dtype in rows:
            c = replace(cfg, sampler=replace(cfg.sampler, rank_dtype=dtype))
            (row,) = bench_samplers(c, [cfg.sampler.name], timed_iters, 3, show_progress=False)
            rows[dtype].append(row)
    return rows


def pair(float32_dir: Path, bfloat16_dir: Path, bootstrap: int) -> None:
    """Print the runs of the two compare folders and the bfloat16 − float32 pair."""
    runs = []
    for folder, dtype in ((float32_dir, "float32"), (bfloat16_dir, "bfloat16")):
        for run_dir in sorted(p for p in (folder / "runs").iterdir() if p.is_dir()):
            run = read_run(run_dir)
            if run.config.get("sampler", {}).get("rank_dtype", "float32") != dtype:
                raise SystemExit(f"{run_dir}: not ranked in {dtype}")
            run = replace(run, summary={**run.summary, "sampler": f"{run.sampler}-{dtype}"})
            runs.append(run)
            print(f"{run.summary['sampler']} seed {run.seed}: mAP {run.summary['mAP']:.4f}")
    table = pair_table(runs, bootstrap, all_pairs=True)
    for row in table.itertuples():
        print(
            f"{row.a} − {row.b}: {row.delta:+.4f} [{row.ci_low:+.4f}, {row.ci_high:+.4f}] "
            f"over {row.seeds} seeds: {row.verdict} ({row.method})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="synth_tiny")
    parser.add_argument("--data", default=None)
    parser.add_argument("--sampler", default="ohem")
    parser.add_argument("--iters", type=int, default=100, help="float32 run of the overlap")
    parser.add_argument("--repeats", type=int, default=3, help="alternated timings per dtype")
    parser.add_argument("--timed-iters", type=int, default=10, help="timed iterations each")
    parser.add_argument("--pair", nargs=2, type=Path, metavar=("F32", "BF16"))
    parser.add_argument("--bootstrap", type=int, default=1000, help="--pair's resamples")
    args = parser.parse_args()
    if args.pair:
        pair(*args.pair, args.bootstrap)
        return
    cfg = build_config(args.config, {"data": args.data} if args.data else {})
    cfg = replace(cfg, sampler=replace(cfg.sampler, name=args.sampler, rank_dtype="float32"))
    values = overlap(cfg, args.iters)
    print(
        f"{args.sampler} on {args.config}: mean Jaccard of the bfloat16 choice with float32's "
        f"{statistics.mean(values):.4f} over {len(values)} iterations (lowest {min(values):.4f})"
    )
    for dtype, rows in cost(cfg, args.repeats, args.timed_iters).items() if args.repeats else ():
        step = statistics.median(r["s_per_iter"] for r in rows)
        readonly = statistics.median(r["readonly_s_per_iter"] for r in rows)
        print(
            f"rank_dtype {dtype}: {step:.4f} s/iter, read-only {readonly:.4f} s/iter "
            f"(median of {len(rows)} alternated runs of {args.timed_iters} iterations)"
        )


if __name__ == "__main__":
    main()
