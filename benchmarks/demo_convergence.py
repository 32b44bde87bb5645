"""Is the demo converged? mAP of each sampler after N iterations against 3N (issue 15).

    python3 benchmarks/demo_convergence.py                     # synth_tiny, seed 1, N and 3N
    OMP_NUM_THREADS=1 python3 benchmarks/demo_convergence.py --seeds 1,2 --jobs 2  # as make demo

The 3N config is the preset with every iteration count (iters, lr_steps, warmup_iters,
checkpoint_every) multiplied by ``--factor``, so both runs follow the same schedule shape. Each
part is one ``ohem compare`` (the runs of a part are reused when already finished, so the two
parts can run in two shells at once); the table compares the final mAPs of the finished parts.
A run counts as converged when it is within ``--tol`` (0.02) mAP of its 3N counterpart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohemcli.presets import preset_text  # noqa: E402

SCALED = ("iters", "warmup_iters", "checkpoint_every")


def scaled_config(preset: str, factor: int, dest: Path) -> Path:
    """Write the preset with every iteration count of its train section times ``factor``."""
    path = Path(preset)
    text = path.read_text(encoding="utf-8") if path.is_file() else preset_text(preset)
    raw = yaml.safe_load(text)
    train = raw.setdefault("train", {})
    for key in SCALED:
        if key in train:
            train[key] = int(train[key]) * factor
    train["lr_steps"] = [int(s) * factor for s in train.get("lr_steps", [])]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return dest


def run_compare(config: Path | str, out: Path, seeds: str, samplers: str, jobs: int) -> None:
    """One ``ohem compare`` of this checkout in a subprocess (``jobs`` runs at a time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "ohemcli", "compare", "--data", "synth", "--config", str(config)]
    cmd += ["--seeds", seeds, "--samplers", samplers, "--out", str(out), "--no-progress"]
    cmd += ["--jobs", str(jobs)]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def final_maps(out: Path) -> dict[str, float]:
    """``sampler-sSEED`` -> final mAP of every finished run of a compare folder."""
    maps = {}
    for summary in sorted(out.glob("runs/*/summary.json")):
        maps[summary.parent.name] = float(json.loads(summary.read_text())["mAP"])
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synth_tiny")
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--samplers", default="fixed,hnm,ohem")
    parser.add_argument("--part", choices=("n", "3n", "both"), default="both")
    parser.add_argument("--tol", type=float, default=0.02)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (make demo: 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/convergence"))
    args = parser.parse_args()
    long_cfg = scaled_config(args.config, args.factor, args.out / f"x{args.factor}.yaml")
    if args.part in ("n", "both"):
        run_compare(args.config, args.out / "n", args.seeds, args.samplers, args.jobs)
    if args.part in ("3n", "both"):
        run_compare(long_cfg, args.out / f"x{args.factor}", args.seeds, args.samplers, args.jobs)
    short, long = final_maps(args.out / "n"), final_maps(args.out / f"x{args.factor}")
    print(f"| run | mAP at N | mAP at {args.factor}N | gap | within {args.tol} |")
    print("|---|---|---|---|---|")
    for name in sorted(set(short) & set(long)):
        gap = long[name] - short[name]
        ok = "yes" if abs(gap) <= args.tol else "no"
        print(f"| {name} | {short[name]:.4f} | {long[name]:.4f} | {gap:+.4f} | {ok} |")


if __name__ == "__main__":
    main()
