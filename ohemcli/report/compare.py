"""``compare``: train every (sampler, seed) with one config (the report: ``report.render``).

Layout of a compare folder (``engine.run_state.ComparePaths``)::

    OUT/compare.yaml                 samplers, seeds and the base config (guards against mixing)
    OUT/runs/<sampler>-s<seed>/      one run folder each (see engine.train)
    OUT/results.csv, summary.csv, pairs.csv, report.md, plots/   written by report.render

Every run differs from the others only in ``sampler.name`` (and ``train.seed``): the same seed
gives the same initial weights and image order. A compare is resumable: finished runs are reused,
an interrupted one continues from its checkpoint, and a repeat only re-renders the files.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.engine.run_state import ComparePaths, RunPaths, comparable_config
from ohemcli.errors import UserError
from ohemcli.fileio import atomic_write_text
from ohemcli.progress import make_progress
from ohemcli.report import tables


def run_config(base: ExperimentConfig, sampler: str, seed: int) -> ExperimentConfig:
    """``base`` with only the sampler name and the seed changed."""
    return replace(
        base, sampler=replace(base.sampler, name=sampler), train=replace(base.train, seed=seed)
    )


def run_dir(out_dir: Path, sampler: str, seed: int) -> Path:
    """``OUT/runs/<sampler>-s<seed>``."""
    return ComparePaths(Path(out_dir)).run(sampler, seed).root


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
    return {**settings, "config": comparable_config(settings.get("config") or {})}


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
    path = ComparePaths(Path(out_dir)).settings
    settings = _settings(base, samplers, seeds)
    if path.is_file():
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if _comparable(saved) == _comparable(settings):
            return
        if ComparePaths(Path(out_dir)).any_checkpoint():  # else nothing trained yet: replace
            raise UserError(
                f"{path}: this folder holds a comparison with other settings (samplers, seeds or "
                "config); choose another --out"
            )
    atomic_write_text(path, yaml.safe_dump(settings, sort_keys=False))


def _finished(path: Path, iters: int) -> bool:
    return RunPaths(path).finished_summary(iters) is not None


def _logged_iter(path: Path) -> int:
    """The last iteration in a run's training log (0 when none): cheap progress of a run."""
    return RunPaths(path).last_logged_iter()


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
    """Train (or reuse) every (sampler, seed) run under ``out_dir/runs``.

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
    return tables.load_runs([p for _, _, p in plan])
