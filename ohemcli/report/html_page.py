"""``report.html``: the analysed comparison as one self-contained page.

The page renders the same :class:`~ohemcli.report.analysis.Analysis` as ``report.md`` through a
jinja2 template shipped with the package (``report/templates/report.html.j2``, autoescaped: run
names, sampler names and messages come from files and are never markup). Every plot is drawn by
``report.plots`` / ``report.forest`` as SVG and embedded inline; each run's evaluation history is
a small SVG line drawn by the template. The page loads nothing: no script, no CDN, no image file,
so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import math
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ohemcli.fileio import atomic_write_text
from ohemcli.report import tables
from ohemcli.report.analysis import Analysis, protocol_lines
from ohemcli.report.forest import plot_forest, verdict_kind
from ohemcli.report.plots import (
    CHOSEN_IOU_SKIPPED,
    plot_chosen_iou,
    plot_map_vs_time,
    plot_per_class_ap,
)
from ohemcli.report.settled import RULES_NOTE, run_key
from ohemcli.runs.paths import ComparePaths

TEMPLATE = "report.html.j2"
SPARK_W, SPARK_H = 120, 28  # a run's evaluation history, in CSS pixels
# The page's plots, top to bottom: name -> caption.
FIGURES = {
    "forest": "Δ mAP of each pair with its 95% interval.",
    "map_vs_time": "mAP against train + mining seconds, one line per run.",
    "chosen_iou": "Max-IoU mix of the RoIs each sampler trained on, over training.",
    "per_class_ap": "Per-class AP, mean over seeds (error bars: std over seeds).",
}


@dataclass(frozen=True)
class Provenance:
    """What produced the page: the command, the compare's config (YAML) and the software and
    machine that rendered it (``render.environment``)."""

    command: str
    config_yaml: str
    environment: Mapping[str, str] = field(default_factory=dict)


def invoked_command() -> str:
    """The ``ohem`` command line of this process, or a note when it is not the ``ohem`` CLI
    (the library called from Python)."""
    prog = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if prog.name == "ohem" or (prog.name == "__main__.py" and prog.parent.name == "ohemcli"):
        return shlex.join(["ohem", *sys.argv[1:]])
    return "(rendered from Python, not the ohem command line)"


def svg_markup(draw: Callable[[Path], Path | None]) -> str | None:
    """``draw(path)`` of a ``.svg`` path, as markup to inline (None when it drew nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        drawn = draw(Path(tmp) / "figure.svg")
        if drawn is None:
            return None
        text = drawn.read_text(encoding="utf-8")
    return text[text.index("<svg") :]  # the XML declaration and DOCTYPE belong to a file


def figures(a: Analysis) -> tuple[dict[str, str], list[str]]:
    """Every plot of :data:`FIGURES` as SVG markup, and one note per plot left out."""
    evals, metrics = tables.evals_frame(a.runs), tables.metrics_frame(a.runs)
    draws: dict[str, Callable[[Path], Path | None]] = {
        "forest": lambda p: plot_forest(a.pairs, p),
        "map_vs_time": lambda p: plot_map_vs_time(evals, p),
        "chosen_iou": lambda p: plot_chosen_iou(metrics, p),
        "per_class_ap": lambda p: plot_per_class_ap(a.results, p),
    }
    drawn: dict[str, str] = {}
    notes = []
    for name, draw in draws.items():
        markup = svg_markup(draw)
        if markup is not None:
            drawn[name] = markup
        elif name == "chosen_iou":
            notes.append(CHOSEN_IOU_SKIPPED)
    return drawn, notes


def sparkline(history: pd.DataFrame, top: float) -> str:
    """SVG polyline points of a run's mAP against iteration, on a shared scale 0..``top``."""
    if history.empty or "mAP" not in history:
        return ""
    h = history.dropna(subset=["mAP"]).sort_values("iter")
    last = float(h["iter"].max()) if len(h) else 0.0
    if last <= 0:
        return ""
    pad = 2.0  # keep the line's ends inside the box
    points = [
        (pad + (SPARK_W - 2 * pad) * float(i) / last,
         SPARK_H - pad - (SPARK_H - 2 * pad) * float(m) / top)
        for i, m in zip(h["iter"], h["mAP"], strict=True)
    ]  # fmt: skip
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _number(value: Any, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return fmt.format(value)


def run_rows(a: Analysis) -> list[dict[str, Any]]:
    """One row per run: its state and why, its figures and its evaluation history's points."""
    by_dir = {run_key(r): r for r in a.runs}
    top = max([float(r.evals["mAP"].max()) for r in a.runs if "mAP" in r.evals] + [1e-9])
    rows = []
    for row in a.results.to_dict("records"):
        run = by_dir.get(str(row["run_dir"]))
        rows.append(
            {
                "run": row["run"],
                "sampler": row["sampler"],
                "seed": row["seed"],
                "mAP": tables.format_cell("mAP", row["mAP"]),
                "best": tables.format_cell("mAP", row["best_mAP"]),
                "spread": tables.format_cell("mAP", row["last3_spread"]),
                "state": row["run_state"],
                "reason": row["state_reason"] or "",
                "p_true_fg": _number(row["p_true_fg"]),
                "p_top_bg": _number(row["p_top_bg"]),
                "spark": sparkline(run.evals, top) if run is not None else "",
            }
        )
    return rows


def sampler_rows(a: Analysis) -> list[dict[str, str]]:
    """One row per sampler: regime, mAP ± std, cost and time to the target mAP."""
    cell = tables.format_cell
    return [
        {
            "sampler": row["sampler"],
            "regime": row["regime"],
            "mAP": cell("mAP", row["mAP"]),
            "std": cell("mAP_std", row["mAP_std"]),
            "recall": cell("recall_300", row["recall_300"]),
            "s_per_iter": cell("s_per_iter", row["s_per_iter"]),
            "ratio": cell("s_per_iter_ratio", row["s_per_iter_ratio"]),
            "total_s": cell("total_s", row["total_s"]),
            "peak_mb": cell("peak_memory_mb", row["peak_memory_mb"]),
            "fg_pct": cell("fg_pct", row["fg_pct"]),
            "to_target": cell("time_to_target", row["time_to_target"]),
            "runs": str(row["runs"]),
        }
        for row in a.summary.to_dict("records")
    ]


def pair_rows(a: Analysis) -> list[dict[str, str]]:
    """One row per pair: ``a − b``, Δ, interval, seeds, verdict and its kind."""
    shown = tables.formatted_pairs(a.pairs) if len(a.pairs) else pd.DataFrame()
    return [
        {
            "pair": r["pair"],
            "delta": r["Δ mAP"],
            "interval": r["95% interval"],
            "seeds": r["seeds"],
            "verdict": r["verdict"],
            "kind": verdict_kind(r["verdict"]),
        }
        for r in shown.to_dict("records")
    ]


def question(a: Analysis) -> str:
    """The question the page answers: its first pair's (ohem − hnm when both ran)."""
    if not len(a.pairs):
        return f"How does {a.summary['sampler'].iloc[0]} train?"
    first = a.pairs.iloc[0]
    return f"Does {first['a']} train a better detector than {first['b']}?"


def setting_line(results: pd.DataFrame) -> str:
    """Data, iterations, seeds, metric and where the runs trained, in one sentence."""
    first = results.iloc[0]
    seeds = ", ".join(map(str, sorted(results["seed"].unique())))
    devices = ", ".join(sorted(map(str, set(results["device"]))))
    machines = ", ".join(sorted(map(str, set(results["machine"]))))
    return (
        f"Data {first['data']}, {tables.detector_words(results)}, {first['iters']} iterations, "
        f"seeds {seeds}, {first['metric']} mAP. Trained on {devices} ({machines})."
    )


def page_context(a: Analysis, provenance: Provenance, plots: bool = True) -> dict[str, Any]:
    """Everything the template shows, as plain values (the template computes nothing)."""
    drawn, skipped = figures(a) if plots else ({}, ["Plots not drawn (--no-plots)."])
    ap = tables.per_class_ap(a.results)
    return {
        "title": "Sampler comparison",
        "question": question(a),
        "setting": setting_line(a.results),
        "pairs": pair_rows(a),
        "method": a.method,
        "time_sentences": a.time_sentences(),
        "notes": a.notes,
        "samplers": sampler_rows(a),
        "target": "—" if math.isnan(a.target) else f"{a.target:.4f}",
        "runs": run_rows(a),
        "stability_warnings": a.stability_warnings,
        "rules_note": RULES_NOTE.strip(),
        "spark_w": SPARK_W,
        "spark_h": SPARK_H,
        "figures": drawn,
        "captions": FIGURES,
        "skipped": skipped,
        "ap_samplers": list(ap.columns),
        "ap_rows": [
            (name, [tables.format_cell("mAP", v) for v in values])
            for name, values in zip(ap.index, ap.to_numpy().tolist(), strict=True)
        ],
        "protocol": protocol_lines(a.runs),
        "left_out": a.left_out,
        "failed": a.failed,
        "command": provenance.command,
        "config_yaml": provenance.config_yaml,
        "environment": dict(provenance.environment),
    }


def render_html(a: Analysis, provenance: Provenance, plots: bool = True) -> str:
    """The text of ``report.html`` (see the module docstring)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ohemcli.report", "templates"),
        autoescape=True,  # every value is text from files: escaped unless marked below
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )
    context = page_context(a, provenance, plots)
    # The plots are matplotlib's own SVG (it escapes the labels it draws): markup, not text.
    context["figures"] = {k: Markup(v) for k, v in context["figures"].items()}
    return env.get_template(TEMPLATE).render(**context)


def write_html(out_dir: Path, a: Analysis, provenance: Provenance, plots: bool = True) -> Path:
    """Write ``report.html`` into ``out_dir`` (atomically) and return its path."""
    return atomic_write_text(
        ComparePaths(Path(out_dir)).report_html, render_html(a, provenance, plots)
    )
