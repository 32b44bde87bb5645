"""benchmarks/gpu_check.sh: valid bash, and every Python path it calls runs (on the CPU here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_the_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow
def test_the_script_runs_its_bench_compare_and_table_on_the_cpu(tmp_path, small_synth):
    config = tmp_path / "small.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"scale": 160, "max_size": 220, "max_proposals": 150},
                "model": {"backbone": "tiny"},
                "sampler": {"batch_rois": 32},
                "train": {"lr": 0.01, "log_every": 1, "eval_points": 0},
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DEVICE": "cpu",
        "CONFIG": str(config),
        "AMP_MODES": "--no-amp",
        "WARMUP": "1",
        "E2E_ITERS": "2",
        "WORKERS": "0",
        "OUT": str(tmp_path / "out"),
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), str(small_synth), "2"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    bench = [r for r in rows if r.startswith("| bench |")]
    runs = [r for r in rows if r.startswith("| run (cpu) |")]
    assert [r.split("|")[2].strip() for r in bench] == ["fixed", "hnm", "ohem"]
    assert sorted(r.split("|")[2].strip() for r in runs) == ["fixed", "hnm", "ohem"]
    for row in bench + runs:
        cells = [c.strip() for c in row.strip("|").split("|")]
        amp, iters, s_iter, peak, loss = cells[2], cells[3], cells[4], cells[6], cells[7]
        assert amp == "False"
        assert iters == ("3" if row in bench else "2")  # bench: 1 warm-up + 2 timed
        assert float(s_iter) > 0 and float(peak) > 0 and float(loss) > 0
    assert "weights: as the config says" in done.stdout  # a tiny config: no --pretrained passed
    assert (tmp_path / "out" / "bench--no-amp.json").is_file()
    assert done.stdout.rstrip().splitlines()[-1].startswith("gpu_check: done in")


def test_the_table_reads_bench_rows_and_run_summaries(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_summary
    finally:
        sys.path.pop(0)
    bench = tmp_path / "bench.json"
    bench.write_text(
        '[{"sampler": "ohem", "amp": true, "iters": 210, "s_per_iter": 0.05, '
        '"effective_s_per_iter": 0.05, "peak_memory_mb": 5120.4, "final_loss": 1.23456}]'
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  amp: false\n")
    (run / "summary.json").write_text(
        '{"sampler": "hnm", "device": "NVIDIA H200", "iters": 60, "s_per_iter": 0.1, '
        '"total_seconds": 9.0, "peak_memory_mb": 7000.0, "final_loss": 0.5}'
    )
    lines = gpu_summary.table([bench, run / "summary.json"]).splitlines()
    assert lines[0] == gpu_summary.HEADER and lines[1] == "|---" * 8 + "|"
    assert lines[2] == "| bench | ohem | True | 210 | 0.0500 | 0.0500 | 5120 | 1.2346 |"
    assert lines[3] == "| run (NVIDIA H200) | hnm | False | 60 | 0.1000 | 0.1500 | 7000 | 0.5000 |"
