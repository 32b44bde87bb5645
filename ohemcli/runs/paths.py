"""The names of a run folder's and a compare folder's files, and the default folders."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ohemcli.config import ExperimentConfig
from ohemcli.errors import UserError
from ohemcli.fileio import read_json
from ohemcli.runs.summary_fields import check_summary

# Every file name of a run folder and of a compare folder is spelled here and nowhere else
# (tests/runs/test_paths.py greps the package for them).
DEFAULT_ROOT = Path("runs")  # relative to the working folder: where --out defaults to
SUBMITIT_DIR = ".submitit"  # submitit's job files and logs, inside a compare folder
PLOT_NAMES = ("map_vs_time", "loss", "fg_fraction", "per_class_ap", "chosen_iou")


@dataclass(frozen=True)
class EvalPaths:
    """Files of an evaluation folder (a run's ``eval/``, or ``ohem eval``'s output)."""

    root: Path

    @property
    def metrics(self) -> Path:
        """The JSON summary that ``ohem eval`` prints."""
        return self.root / "metrics.json"

    @property
    def matches(self) -> Path:
        """Per class, the ranked detections' image, TP and FP flags (evaluation.matches)."""
        return self.root / "matches.npz"

    @property
    def coco_results(self) -> Path:
        """The detections as a COCO results json (evaluation.coco_results), for other tools."""
        return self.root / "detections_coco.json"


@dataclass(frozen=True)
class RunPaths:
    """Files of a run folder (design.md: run directory)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def evals(self) -> Path:
        """One line per evaluation during training: mAP against wall-clock."""
        return self.root / "evals.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (engine.tensorboard): one event folder per run."""
        return self.root / "tb"

    @property
    def eval_dir(self) -> Path:
        """The final evaluation: devkit results files, metrics.json, matches.npz."""
        return self.root / "eval"

    @property
    def eval_metrics(self) -> Path:
        return EvalPaths(self.eval_dir).metrics

    @property
    def matches(self) -> Path:
        return EvalPaths(self.eval_dir).matches

    def reeval_dir(self, split: str, protocol: str, metric: str) -> Path:
        """``eval-<split>-<protocol>-<metric>``: where ``ohem eval RUN`` writes, beside the run's
        own ``eval/``, which only training writes (the report reads that one alone)."""
        return self.root / f"eval-{split}-{protocol}-{metric}"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plugin(self) -> Path:
        """A plugin sampler's import path, package and version (plugin runs only)."""
        return self.root / "plugin.json"

    @property
    def lock(self) -> Path:
        """Held (fcntl.lockf, a POSIX lock) by the one process that writes the run folder."""
        return self.root / "run.lock"

    def read_summary(self) -> dict[str, Any]:
        """summary.json as a JSON object whose fields have the types the readers expect; an
        edited or foreign file is a UserError naming the file (and the field)."""
        summary = read_json(self.summary)
        if not isinstance(summary, dict):
            raise UserError(
                f"{self.summary}: expected a JSON object, found {type(summary).__name__}"
            )
        check_summary(self.summary, summary)
        return summary

    def finished_summary(self, iters: int) -> dict[str, Any] | None:
        """The run's summary when it was trained to at least ``iters`` iterations, else None;
        read as the report reads it (:meth:`read_summary`), so a run it would refuse is never
        reused."""
        if not self.summary.is_file():
            return None
        summary = self.read_summary()
        return summary if summary.get("iters", 0) >= iters else None

    def last_logged_iter(self) -> int:
        """The last iteration in metrics.jsonl (0 when none): cheap progress of a running run."""
        if not self.metrics.is_file():
            return 0
        with open(self.metrics, "rb") as f:
            f.seek(max(0, self.metrics.stat().st_size - 4096))
            lines = [s for s in f.read().decode("utf-8", "replace").splitlines() if s.strip()]
        for line in reversed(lines):
            try:
                return int(json.loads(line)["iter"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0


@dataclass(frozen=True)
class ComparePaths:
    """Files of a compare folder: its settings, one run folder per (sampler, seed), the report."""

    root: Path

    @property
    def settings(self) -> Path:
        """Samplers, seeds and the base config (guards against mixing settings)."""
        return self.root / "compare.yaml"

    def run(self, sampler: str, seed: int) -> RunPaths:
        """``OUT/runs/<sampler>-s<seed>`` (a plugin's import path spelled for a folder name)."""
        return RunPaths(self.root / "runs" / f"{folder_name(sampler)}-s{seed}")

    def finished_runs(self) -> list[Path]:
        """Run folders under ``runs/`` that have a summary."""
        return sorted(p.parent for p in self.root.glob(f"runs/*/{RunPaths(Path()).summary.name}"))

    def any_checkpoint(self) -> bool:
        """True once any run of the folder has started training."""
        return any(self.root.glob(f"runs/*/{RunPaths(Path()).checkpoint.name}"))

    @property
    def lock(self) -> Path:
        """Held (fcntl.lockf) by the one ``ohem compare`` that is submitting this folder's runs."""
        return self.root / "compare.lock"

    @property
    def submitit(self) -> Path:
        """submitit's job files (``*_submitted.pkl``) and logs of a launched compare."""
        return self.root / SUBMITIT_DIR

    def is_compare(self) -> bool:
        """A compare folder: it has compare.yaml or finished runs."""
        return self.settings.is_file() or bool(self.finished_runs())

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def pairs_csv(self) -> Path:
        return self.root / "pairs.csv"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        """The report as one self-contained page (report.html_page)."""
        return self.root / "report.html"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def plot(self, name: str) -> Path:
        """``plots/<name>.png`` for a name in ``PLOT_NAMES``."""
        return self.plots_dir / f"{name}.png"


def _data_name(cfg: ExperimentConfig) -> str:
    """A short name of the data for folder names: ``synth``, the data root folder's name, or the
    stem of the first of COCO json files (``a.json,b.json``)."""
    root = cfg.data.root.split(",")[0]
    if root == "synth":
        return "synth"
    path = Path(root).resolve()
    return path.stem if path.suffix == ".json" else path.name


def folder_name(sampler: str) -> str:
    """``sampler`` with every character other than letters, digits, ``.``, ``_`` and ``-`` made
    ``_``: a plugin's import path (``pkg.mod:Class``) holds ``:``, which Windows, ``scp`` and
    ``PATH``-like lists read as a separator. The run's config keeps the name as given."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", sampler)


def default_run_dir(cfg: ExperimentConfig) -> Path:
    """``runs/<data>-<sampler>-s<seed>``: the folder of ``ohem train`` without ``--out``."""
    return DEFAULT_ROOT / f"{_data_name(cfg)}-{folder_name(cfg.sampler.name)}-s{cfg.train.seed}"


def default_compare_dir(cfg: ExperimentConfig) -> Path:
    """``runs/compare-<data>``: the folder of ``ohem compare`` without ``--out``."""
    return DEFAULT_ROOT / f"compare-{_data_name(cfg)}"


def run_dirs(path: Path) -> list[Path]:
    """A run folder itself, or every finished run of a compare folder; [] when neither."""
    path = Path(path)
    return [path] if RunPaths(path).summary.is_file() else ComparePaths(path).finished_runs()
