"""The report files of a comparison: results.csv, summary.csv, report.md and the plots.

Layout (names from ``engine.run_state.ComparePaths``)::

    OUT/results.csv, summary.csv     one row per run / per sampler
    OUT/report.md, OUT/plots/*.png   the report with its plots
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from ohemcli.engine.run_state import ComparePaths
from ohemcli.engine.runs import Run, read_run
from ohemcli.fileio import atomic_write_text
from ohemcli.report import tables
from ohemcli.report.plots import write_plots

MEMORY_NOTE = (
    "Times are means over seeds; total s = train + mining (evaluation excluded). peak MB is the "
    "CUDA peak allocated per run; on the CPU it is the process's peak resident memory (VmHWM), "
    "reset at the start of each run.\n"
)


def environment() -> dict[str, str]:
    """Software versions and the machine that renders the report."""
    import cv2
    import numpy as np
    import torch
    import torchvision

    import ohemcli

    try:
        version = importlib.metadata.version("ohemcli")
    except importlib.metadata.PackageNotFoundError:
        version = ohemcli.__version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ohemcli": version,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "CPUs": str(os.cpu_count()),
        "GPU": gpu,
    }


def _config_yaml(out: ComparePaths, runs: Sequence[Run]) -> str:
    """The compare's base config, or the first run's config for loose run folders."""
    if out.settings.is_file():
        raw = yaml.safe_load(out.settings.read_text(encoding="utf-8")) or {}
        return yaml.safe_dump(raw.get("config", {}), sort_keys=False)
    if runs and runs[0].config:
        return yaml.safe_dump(runs[0].config, sort_keys=False)
    return "(no config found)\n"


def _runs_table(results: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "sampler", "seed", "iters", "mAP", "train_seconds", "mining_seconds"]
    runs = results[[*cols, "s_per_iter"]].copy()
    runs["mAP"] = runs["mAP"].map("{:.4f}".format)
    for c in ("train_seconds", "mining_seconds", "s_per_iter"):
        runs[c] = runs[c].map("{:.3f}".format)
    return runs


def _heading(results: pd.DataFrame) -> str:
    first = results.iloc[0]
    seeds = ", ".join(map(str, sorted(results["seed"].unique())))
    devices = ", ".join(sorted(set(results["device"])))
    machines = ", ".join(sorted(set(results["machine"])))
    return (
        f"Data `{first['data']}`, {first['iters']} iterations, seeds {seeds}, "
        f"{first['metric']} mAP. Trained on {devices} ({machines}).\n"
    )


def report_markdown(
    out: ComparePaths, runs: Sequence[Run], results: pd.DataFrame, plots: Sequence[Path] = ()
) -> str:
    """The text of ``report.md``: table, verdict, per-class AP, plots, config, versions, machine."""
    summary = tables.summary_table(results)
    ap = tables.per_class_ap(results).map(lambda v: tables.format_cell("mAP", v))
    parts = [
        "# Sampler comparison\n",
        _heading(results),
        "## Results\n",
        tables.markdown_table(tables.formatted(summary)),
        MEMORY_NOTE,
        "## Verdict\n",
        tables.verdict_text(results, summary).replace("\n", "\n\n") + "\n",
        "## Per-class AP (mean over seeds)\n",
        tables.markdown_table(ap.rename_axis("class"), index=True),
    ]
    if plots:
        parts.append("## Plots\n")
        parts += [f"![{p.stem}]({p.relative_to(out.root).as_posix()})\n" for p in plots]
    parts += [
        "## Runs\n",
        tables.markdown_table(_runs_table(results)),
        "## Config\n",
        "The runs differ only in `sampler.name` and `train.seed`.\n",
        "```yaml\n" + _config_yaml(out, runs) + "```\n",
        "## Software and machine (where this report was rendered)\n",
        "".join(f"- {k}: {v}\n" for k, v in environment().items()),
    ]
    return "\n".join(parts)


def write_report(out_dir: Path, results: pd.DataFrame, plots: bool = True) -> list[Path]:
    """Write results.csv, summary.csv, report.md and plots/*.png into ``out_dir``.

    ``results`` is ``tables.load_runs``'s table; the runs are read again from its ``run_dir``
    column for their logs.
    """
    out = ComparePaths(Path(out_dir))
    runs = [read_run(d) for d in results["run_dir"]]
    summary = tables.summary_table(results)
    written = [
        atomic_write_text(out.results_csv, tables.results_csv(results)),
        atomic_write_text(out.summary_csv, tables.summary_csv(summary)),
    ]
    drawn: list[Path] = []
    if plots:
        evals, metrics = tables.evals_frame(runs), tables.metrics_frame(runs)
        drawn = write_plots(results, evals, metrics, out)
    written += drawn
    written.append(atomic_write_text(out.report_md, report_markdown(out, runs, results, drawn)))
    return written
