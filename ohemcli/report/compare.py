"""The report files of a compare folder, from its finished run folders.

    OUT/results.csv, summary.csv     one row per run / per sampler
    OUT/report.md, OUT/plots/*.png   the report with its plots

Training the runs is ``ohemcli.engine.compare``'s job; this module only reads what they wrote.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import pandas as pd
import yaml

from ohemcli.engine.compare import SETTINGS_FILE
from ohemcli.fileio import atomic_write_text
from ohemcli.report import tables
from ohemcli.report.plots import PLOT_FILES, write_plots

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


def _config_yaml(out_dir: Path, results: pd.DataFrame) -> str:
    """The compare's base config, or the first run's config.yaml for loose run folders."""
    settings = Path(out_dir) / SETTINGS_FILE
    if settings.is_file():
        raw = yaml.safe_load(settings.read_text(encoding="utf-8"))
        return yaml.safe_dump(raw.get("config", {}), sort_keys=False)
    first = Path(results["run_dir"].iloc[0]) / "config.yaml"
    return first.read_text(encoding="utf-8") if first.is_file() else "(no config.yaml found)\n"


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


def report_markdown(out_dir: Path, results: pd.DataFrame, plots: bool = True) -> str:
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
        parts += [f"![{name[:-4]}](plots/{name})\n" for name in PLOT_FILES]
    parts += [
        "## Runs\n",
        tables.markdown_table(_runs_table(results)),
        "## Config\n",
        "The runs differ only in `sampler.name` and `train.seed`.\n",
        "```yaml\n" + _config_yaml(out_dir, results) + "```\n",
        "## Software and machine (where this report was rendered)\n",
        "".join(f"- {k}: {v}\n" for k, v in environment().items()),
    ]
    return "\n".join(parts)


def write_report(out_dir: Path, results: pd.DataFrame, plots: bool = True) -> list[Path]:
    """Write results.csv, summary.csv, report.md and plots/*.png into ``out_dir``."""
    out_dir = Path(out_dir)
    summary = tables.summary_table(results)
    written = [
        atomic_write_text(out_dir / "results.csv", tables.results_csv(results)),
        atomic_write_text(out_dir / "summary.csv", tables.summary_csv(summary)),
    ]
    if plots:
        written += write_plots(results, out_dir)
    written.append(
        atomic_write_text(out_dir / "report.md", report_markdown(out_dir, results, plots))
    )
    return written
