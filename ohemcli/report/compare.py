"""``compare``: train every (sampler, seed) with one config, then write tables, plots, report.

Layout of a compare folder::

    OUT/compare.yaml                 samplers, seeds and the base config (guards against mixing)
    OUT/runs/<sampler>-s<seed>/      one run folder each (see engine.train)
    OUT/results.csv, summary.csv     one row per run / per sampler
    OUT/report.md, OUT/plots/*.png   the report with its plots

Every run differs from the others only in ``sampler.name`` (and ``train.seed``): the same seed
gives the same initial weights and image order. A compare is resumable: finished runs are reused,
an interrupted one continues from its checkpoint, and a repeat only re-renders the files.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.engine.run_state import RunPaths
from ohemcli.errors import UserError
from ohemcli.fileio import atomic_write_text
from ohemcli.progress import make_progress
from ohemcli.report import tables
from ohemcli.report.plots import PLOT_FILES, write_plots

SETTINGS_FILE = "compare.yaml"
MEMORY_NOTE = (
    "Times are means over seeds; total s = train + mining (evaluation excluded). peak MB is the "
    "CUDA peak allocated per run; on the CPU it is the process's peak resident memory (VmHWM), "
    "reset at the start of each run.\n"
)


def run_config(base: ExperimentConfig, sampler: str, seed: int) -> ExperimentConfig:
    """``base`` with only the sampler name and the seed changed."""
    return replace(
        base, sampler=replace(base.sampler, name=sampler), train=replace(base.train, seed=seed)
    )


def run_dir(out_dir: Path, sampler: str, seed: int) -> Path:
    """``OUT/runs/<sampler>-s<seed>``."""
    return Path(out_dir) / "runs" / f"{sampler}-s{seed}"


def _settings(
    base: ExperimentConfig, samplers: Sequence[str], seeds: Sequence[int]
) -> dict[str, Any]:
    return {
        "samplers": list(samplers),
        "seeds": [int(s) for s in seeds],
        "config": config_to_dict(base),
    }


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings without what every run overrides anyway (sampler name, seed)."""
    s = json.loads(json.dumps(settings))
    s.get("config", {}).get("sampler", {}).pop("name", None)
    s.get("config", {}).get("train", {}).pop("seed", None)
    return s


def check_settings(
    out_dir: Path, base: ExperimentConfig, samplers: Sequence[str], seeds: Sequence[int]
) -> None:
    """Write ``OUT/compare.yaml``; refuse other settings once a run of the folder has started."""
    from ohemcli.samplers import SAMPLERS

    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown:
        raise UserError(
            f"--samplers: unknown {', '.join(unknown)} (choose from {', '.join(SAMPLERS)})"
        )
    if not samplers or len(set(samplers)) != len(samplers):
        raise UserError(f"--samplers: give each sampler once, got {','.join(samplers) or 'none'}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: give each seed once, got {','.join(map(str, seeds)) or 'none'}")
    path = Path(out_dir) / SETTINGS_FILE
    settings = _settings(base, samplers, seeds)
    if path.is_file():
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if _comparable(saved) == _comparable(settings):
            return
        if any(Path(out_dir).glob("runs/*/checkpoint.pt")):  # else nothing trained yet: replace
            raise UserError(
                f"{path}: this folder holds a comparison with other settings (samplers, seeds or "
                "config); choose another --out"
            )
    atomic_write_text(path, yaml.safe_dump(settings, sort_keys=False))


def _finished(path: Path, iters: int) -> bool:
    return RunPaths(path).finished_summary(iters) is not None


def _logged_iter(path: Path) -> int:
    """The last iteration in a run's metrics.jsonl (0 when none): cheap progress of a run."""
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        return 0
    with open(metrics, "rb") as f:
        f.seek(max(0, metrics.stat().st_size - 4096))
        lines = [s for s in f.read().decode("utf-8", "replace").splitlines() if s.strip()]
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iter"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def run_order(samplers: Sequence[str], seeds: Sequence[int]) -> list[tuple[int, str]]:
    """(seed, sampler) pairs, seed by seed, the sampler order rotated by one for each seed.

    The first run in a process pays warm-up costs (allocator, kernels, caches); rotating spreads
    that over the samplers instead of always charging it to the first one.
    """
    n = len(samplers)
    return [(seed, samplers[(j + k) % n]) for j, seed in enumerate(seeds) for k in range(n)]


class _Watcher:
    """Advances the overall bar from a training run's metrics.jsonl, from a background thread."""

    def __init__(self, progress: Any, task: Any, path: Path, start: int, base: float) -> None:
        self.progress, self.task, self.path, self.start, self.base = (
            progress,
            task,
            path,
            start,
            base,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            done = max(0, _logged_iter(self.path) - self.start)
            self.progress.update(self.task, completed=self.base + done)

    def __enter__(self) -> _Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def compare(
    base: ExperimentConfig,
    samplers: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Train (or reuse) every (sampler, seed) run under ``out_dir/runs``, write the report files.

    Returns the results table (``tables.load_runs``: one row per run). The overall bar on stderr
    counts the iterations still to train, names the current run and gives an ETA for the whole
    comparison; each run's own bar shows below it.
    """
    from ohemcli.engine.train import train

    out_dir = Path(out_dir)
    check_settings(out_dir, base, samplers, seeds)
    iters = base.train.iters
    plan = [(s, seed, run_dir(out_dir, s, seed)) for seed, s in run_order(samplers, seeds)]
    start = {p: (iters if _finished(p, iters) else min(iters, _logged_iter(p))) for _, _, p in plan}
    with make_progress(disable=not show_progress) as progress:
        total = sum(iters - v for v in start.values()) or 1
        task = progress.add_task("compare", total=total)
        done = 0.0
        for k, (sampler, seed, path) in enumerate(plan, start=1):
            name = f"run {k}/{len(plan)}: {sampler} seed {seed}"
            if _finished(path, iters):
                if show_progress:
                    progress.console.print(f"{name}: finished earlier in {path}, reused")
                continue
            if show_progress:
                progress.console.rule(name)
            progress.update(task, description=f"compare {k}/{len(plan)}: {sampler} s{seed}")
            watch = _Watcher(progress, task, path, start[path], done)
            with watch if show_progress else contextlib.nullcontext():
                train(
                    run_config(base, sampler, seed), path, resume=True, show_progress=show_progress
                )
            done += iters - start[path]
            progress.update(task, completed=done)
        progress.update(task, description="compare", completed=total)
    results = tables.load_runs([p for _, _, p in plan])
    write_report(out_dir, results)
    return results


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
