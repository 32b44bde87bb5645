"""Fingerprint what a refactor must not change: a short synthetic compare, hashed.

Runs ``ohem compare`` (fixed, hnm, ohem, seed 1) on the built-in synthetic set with a short
synth_tiny schedule that includes hnm mining passes and two evaluations, one thread, then prints
one JSON object: per run, a hash of the final weights, the losses of ``metrics.jsonl``, the mAP
and AP, the evaluation history's mAPs; and the report's tables without their timing columns.
Two trees behave the same when their fingerprints are equal:

    OMP_NUM_THREADS=1 PYTHONPATH=OLD_TREE python3 scripts/behaviour_fingerprint.py OUT_A > a.json
    OMP_NUM_THREADS=1 python3 scripts/behaviour_fingerprint.py OUT_B > b.json
    diff a.json b.json

Set ``OHEM_CACHE`` to one folder for both, so that the synthetic set is generated once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

CONFIG = """\
data: {ROOT_KEY: synth, train_images: 40, scale: 240, max_size: 400, max_proposals: 200,
       ss_max_side: 240, workers: 1}
model: {backbone: tiny, pretrained: true, frozen_convs: 4, roi_op: pool}
sampler: {batch_rois: 128, mine_every: 40}
train: {iters: 120, lr: 0.005, lr_steps: [90], warmup_iters: 20, checkpoint_every: 60,
        log_every: 20, eval_points: 2}
"""
# Columns that hold wall-clock, memory or where the run lives: they differ between any two runs.
TIMING = ("second", "s_per_iter", "s/iter", "peak", "time", "s to", "machine", "concurrent",
          "run_dir")  # fmt: skip


def _root_key() -> str:
    """The data root's config key in the tree under test (``data.data`` before it was renamed)."""
    from dataclasses import fields

    from ohemcli.config import DataConfig

    return "root" if "root" in {f.name for f in fields(DataConfig)} else "data"


def _weights_hash(path: Path) -> str:
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _csv_without_timing(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {
            k: v
            for k, v in r.items()
            if not k.endswith("_s") and not any(t in k.lower() for t in TIMING)
        }
        for r in rows
    ]


def main(out: Path, run: bool = True) -> None:
    """Run the short compare into ``out`` (unless ``run`` is False) and print its fingerprint."""
    if run:
        out.mkdir(parents=True, exist_ok=True)
        config = out / "fingerprint.yaml"
        config.write_text(CONFIG.replace("ROOT_KEY", _root_key()))
        cmd = [sys.executable, "-m", "ohemcli", "compare", "--data", "synth", "--config",
               str(config), "--seeds", "1", "--jobs", "1", "--out", str(out / "cmp")]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    runs = {}
    for run in sorted((out / "cmp" / "runs").iterdir()):
        summary = json.loads((run / "summary.json").read_text())
        losses = [
            [r["iter"], r["loss"], r["loss_cls"], r["loss_box"]]
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        ]
        runs[run.name] = {
            "weights": _weights_hash(run / "checkpoint.pt"),
            "losses": losses,
            "mAP": summary["mAP"],
            "AP": summary["AP"],
            "eval_mAPs": [
                json.loads(line)["mAP"] for line in (run / "evals.jsonl").read_text().splitlines()
            ],
        }
    tables = {
        name: _csv_without_timing(out / "cmp" / name)
        for name in ("results.csv", "summary.csv", "pairs.csv")
        if (out / "cmp" / name).is_file()
    }
    print(json.dumps({"runs": runs, "tables": tables}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]), run="--no-run" not in sys.argv[2:])
