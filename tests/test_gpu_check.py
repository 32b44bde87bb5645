"""benchmarks/gpu_check.sh: valid bash, and every Python path it calls runs (on the CPU here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_the_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def _clone(tmp_path: Path) -> Path:
    """The checkout's files (tracked, as they are now) in a folder with no ../shared beside it."""
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    clone = tmp_path / "alone" / "repo"
    for name in files:
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    return clone


@pytest.mark.slow
def test_the_script_runs_every_check_on_the_cpu_from_a_bare_clone(tmp_path):
    clone = _clone(tmp_path)
    config = tmp_path / "small.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"scale": 128, "max_size": 160, "max_proposals": 60},
                "model": {"backbone": "tiny"},
                "sampler": {"batch_rois": 16},
                "train": {"lr": 0.01},
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(clone),
        "DEVICE": "cpu",
        "CONFIG": str(config),
        "AMP_MODES": "--no-amp",
        "WARMUP": "0",
        "WORKERS": "0",
        "TRAINVAL": "4",
        "TEST": "2",
        "OUT": str(tmp_path / "out"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(clone / "benchmarks" / "gpu_check.sh"), "", "1"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"data: {tmp_path / 'out' / 'synth'}" in done.stdout  # no VOC root: synthetic
    rows = [r.strip("|").split("|") for r in done.stdout.splitlines() if r.startswith("| ")]
    checks = {c[0].strip(): c[1].strip() for c in rows[1:]}
    names = ["fixed", "hnm", "ohem", "ohem-mmdet", "libra", "pisa", "sampling-free", "focal"]
    for name in [*names, "hard_after_warmup:HardAfterWarmup"]:
        assert checks[f"bench {name} amp=False"] == "ok", checks
    assert checks["train ohem 1 iters"] == checks["resume ohem to 2"] == "ok"
    assert checks["resumed summary"] == checks["head weights change (--no-amp)"] == "ok"
    assert checks["torchrun 2 GPUs"] == "skipped"
    assert "gpu_check: 13 passed, 1 skipped, 0 failed" in done.stdout


@pytest.mark.slow
def test_a_failed_check_makes_the_exit_non_zero(tmp_path):
    results = tmp_path / "results.tsv"
    results.write_text("bench ohem amp=True\tok\tfine\nhead weights change\tFAIL\tsame\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check_steps.py"), "table", str(results)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "| head weights change | FAIL | same |" in done.stdout


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
