"""The report files of a comparison: results.csv, summary.csv, report.md and the plots.

Layout (names from ``runs.paths.ComparePaths``)::

    OUT/results.csv, summary.csv     one row per run / per sampler
    OUT/pairs.csv                    one row per pair of samplers (Δ, interval, verdict)
    OUT/report.md, OUT/plots/*.png   the report with its plots
    OUT/report.html                  the same as one self-contained page (report.html_page)
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from ohemcli.fileio import atomic_write_text
from ohemcli.report import tables
from ohemcli.report.analysis import Analysis, analyse_results, protocol_lines
from ohemcli.report.html_page import Provenance, invoked_command, write_html
from ohemcli.report.plots import write_plots
from ohemcli.report.settled import RULES_NOTE
from ohemcli.runs.paths import ComparePaths
from ohemcli.runs.records import Run
from ohemcli.runs.settings import read_settings

MEMORY_NOTE = (
    "Times are means over seeds; total s = train + mining (evaluation excluded). peak MB is the "
    "CUDA peak allocated per run; on the CPU it is the process's peak resident memory (VmHWM), "
    "reset at the start of each run.\n"
)


# Package versions come from the installed metadata, so that rendering a report never loads
# torch, torchvision or OpenCV (each run's summary names the device it trained on).
VERSIONED = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
             "opencv": "opencv-contrib-python-headless", "pandas": "pandas"}  # fmt: skip


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, str]:
    """Software versions and the machine that renders the report."""
    import ohemcli

    version = _version("ohemcli")
    found = {"python": platform.python_version(), "ohemcli": ohemcli.__version__}
    if version != "not installed":
        found["ohemcli"] = version
    found.update({name: _version(dist) for name, dist in VERSIONED.items()})
    found.update(platform=platform.platform(), CPUs=str(os.cpu_count()))
    return found


def _config_yaml(out: ComparePaths, runs: Sequence[Run]) -> str:
    """The compare's base config, or the first run's config for loose run folders."""
    if out.settings.is_file():
        raw = read_settings(out.settings)
        return yaml.safe_dump(raw.get("config", {}), sort_keys=False)
    if runs and runs[0].config:
        return yaml.safe_dump(runs[0].config, sort_keys=False)
    return "(no config found)\n"


def _runs_table(results: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "sampler", "seed", "iters", "mAP", "train_seconds", "mining_seconds"]
    stable = ["best_mAP", "last3_spread", "last_quarter_change", "p_true_fg", "p_top_bg"]
    recall = [c for c in tables.RECALL_KEYS if c in results]
    runs = results[[*cols, *recall, "s_per_iter", *stable, "run_state"]].copy()
    for c in ("mAP", "best_mAP", "last3_spread"):
        runs[c] = [tables.format_cell("mAP", v) for v in runs[c]]
    for c in recall:  # the share of test objects the first 300 and 1,000 proposals cover
        runs[c] = ["—" if v is None or math.isnan(v) else f"{v:.3f}" for v in runs[c]]
    for c in ("p_true_fg", "p_top_bg"):  # the classifier's health over the last quarter
        runs[c] = ["—" if v is None or math.isnan(v) else f"{v:.2f}" for v in runs[c]]
    runs["last_quarter_change"] = [
        "—" if v is None or math.isnan(v) else f"{v:+.4f}" for v in runs["last_quarter_change"]
    ]
    for c in ("train_seconds", "mining_seconds", "s_per_iter"):
        runs[c] = runs[c].map("{:.3f}".format)
    return runs


def _stability_section(a: Analysis) -> list[str]:
    """The runs that are noise, one line per sampler, and what that does to the pairs."""
    if not a.stability_warnings:
        return []
    return [
        "## Runs not settled\n",
        "".join(f"- {line}\n" for line in a.stability_warnings),
        RULES_NOTE,
    ]


def _heading(results: pd.DataFrame) -> str:
    first = results.iloc[0]
    seeds = ", ".join(map(str, sorted(results["seed"].unique())))
    devices = ", ".join(sorted(set(results["device"])))
    machines = ", ".join(sorted(set(results["machine"])))
    return (
        f"Data `{first['data']}`, {tables.detector_words(results)}, {first['iters']} iterations, "
        f"seeds {seeds}, {first['metric']} mAP. Trained on {devices} ({machines}).\n"
    )


def _results_section(a: Analysis) -> list[str]:
    target = "—" if math.isnan(a.target) else f"{a.target:.4f}"
    return [
        "## Results\n",
        tables.markdown_table(tables.formatted(a.summary)),
        MEMORY_NOTE + f"s to target: train + mining seconds to first reach mAP {target} "
        "(interpolated between evaluations; mean over seeds, — when a seed never reached it).\n",
        "## Pairs\n",
        tables.markdown_table(tables.formatted_pairs(a.pairs))
        if len(a.pairs)
        else "One sampler: no pairs.\n",
        a.method + "\n",
        "## Time to accuracy\n",
        "".join(f"- {line}\n" for line in a.time_sentences()),
        "## Eval protocol\n",
        "\n".join(protocol_lines(a.runs)) + "\n",
    ]


def report_markdown(
    out: ComparePaths, a: Analysis, plots: Sequence[Path] = (), skipped: Sequence[str] = ()
) -> str:
    """The text of ``report.md``: tables, pairs, time to accuracy, plots, config, machine."""
    ap = tables.per_class_ap(a.results).map(lambda v: tables.format_cell("mAP", v))
    parts = ["# Sampler comparison\n", _heading(a.results)]
    if a.notes:
        parts.append("\n\n".join(a.notes) + "\n")
    if a.left_out:
        parts.append("## Runs left out\n")
        parts.append(
            "These runs' files failed their checks; no number below counts them.\n\n"
            + "".join(f"- {line}\n" for line in a.left_out)
        )
    if a.failed:
        parts.append("## Runs that did not finish\n")
        parts.append(
            "These runs of the compare have no finished summary; no number below counts them.\n\n"
            + "".join(f"- {line}\n" for line in a.failed)
        )
    parts += _stability_section(a)
    parts += _results_section(a)
    parts += [
        "## Per-class AP (mean over seeds)\n",
        tables.markdown_table(ap.rename_axis("class"), index=True),
    ]
    if plots or skipped:
        parts.append("## Plots\n")
        parts += [f"![{p.stem}]({p.relative_to(out.root).as_posix()})\n" for p in plots]
        parts += [f"{note}\n" for note in skipped]
    parts += [
        "## Runs\n",
        tables.markdown_table(_runs_table(a.results)),
        "## Config\n",
        "The runs differ only in `sampler.name`, `train.seed` and what each sampler's regime "
        "sets (the regime column: its RoIs per image and fg share, its classifier).\n",
        "```yaml\n" + _config_yaml(out, a.runs) + "```\n",
        "## Software and machine (where this report was rendered)\n",
        "".join(f"- {k}: {v}\n" for k, v in environment().items()),
    ]
    return "\n".join(parts)


def write_analysis(
    out_dir: Path, a: Analysis, plots: bool = True, command: str | None = None
) -> list[Path]:
    """Write results.csv, summary.csv, pairs.csv, report.md, report.html and plots/*.png into
    ``out_dir``; ``command``: the one the page names (default: this process's ``ohem`` line)."""
    out = ComparePaths(Path(out_dir))
    written = [
        atomic_write_text(out.results_csv, tables.to_csv(a.results)),
        atomic_write_text(out.summary_csv, tables.to_csv(a.summary)),
        atomic_write_text(out.pairs_csv, tables.to_csv(a.pairs)),
    ]
    drawn: list[Path] = []
    skipped: list[str] = []
    if plots:
        evals, metrics = tables.evals_frame(a.runs), tables.metrics_frame(a.runs)
        drawn, skipped = write_plots(a.results, evals, metrics, out)
    written += drawn
    written.append(atomic_write_text(out.report_md, report_markdown(out, a, drawn, skipped)))
    made = Provenance(command or invoked_command(), _config_yaml(out, a.runs), environment())
    written.append(write_html(out.root, a, made, plots))
    return written


def write_report(
    out_dir: Path,
    results: pd.DataFrame,
    plots: bool = True,
    bootstrap: int = 1000,
    target_map: float | None = None,
) -> list[Path]:
    """:func:`write_analysis` of the runs of a ``tables.load_runs`` table."""
    return write_analysis(out_dir, analyse_results(results, bootstrap, target_map), plots)
