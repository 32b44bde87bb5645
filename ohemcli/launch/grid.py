"""The (sampler, seed) grid of a comparison: its runs, their folders and their state.

Shared by the in-process compare (``launch.compare``) and the submitit launcher
(``launch.submit``); the run folders are the only record of what is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ohemcli.config import ExperimentConfig
from ohemcli.runs.paths import ComparePaths, RunPaths


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: which sampler and seed, and its folder."""

    sampler: str
    seed: int
    path: Path

    @property
    def name(self) -> str:
        """``<sampler>-s<seed>``, the folder's name."""
        return self.path.name


@dataclass(frozen=True)
class RunFailure:
    """A run that ended without a finished summary."""

    name: str
    path: Path
    state: str  # "failed", "killed", ...
    last_line: str  # the last line of its log (the error, as a rule)


@dataclass
class CompareOutcome:
    """What a compare call did: the grid, the runs that failed, the runs still under way."""

    runs: list[RunSpec]
    failures: list[RunFailure] = field(default_factory=list)
    pending: list[RunSpec] = field(default_factory=list)  # submitted, not waited for (--no-wait)

    def finished(self, iters: int) -> list[Path]:
        """The folders of the runs trained to ``iters`` iterations."""
        return [r.path for r in self.runs if is_finished(r.path, iters)]

    def unfinished(self, iters: int) -> list[RunFailure]:
        """The failures, then every other run of the grid that neither finished nor is under way:
        a run whose folder was deleted (or emptied) during the compare is named, not dropped."""
        named = {f.path for f in self.failures} | {r.path for r in self.pending}
        gone = [
            RunFailure(
                r.name,
                r.path,
                "missing" if not r.path.exists() else "unfinished",
                "its run folder is gone (deleted during the compare?)"
                if not r.path.exists()
                else "no finished summary.json in its folder",
            )
            for r in self.runs
            if r.path not in named and not is_finished(r.path, iters)
        ]
        return [*self.failures, *gone]


def failure_line(exc: BaseException) -> str:
    """The one line a failed run's row shows: the exception's type and the first line of it."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_config(base: ExperimentConfig, sampler: str, seed: int) -> ExperimentConfig:
    """``base`` with the sampler name and the seed changed, and the sampler's regime applied
    (``samplers.regime.apply_regime``: its budget under the reference regime, its method's
    keys): the config the run trains with and records."""
    from ohemcli.samplers.regime import apply_regime

    return apply_regime(
        replace(
            base,
            sampler=replace(base.sampler, name=sampler),
            train=replace(base.train, seed=seed),
        )
    )


def run_dir(out_dir: Path, sampler: str, seed: int) -> Path:
    """``OUT/runs/<sampler>-s<seed>``."""
    return ComparePaths(Path(out_dir)).run(sampler, seed).root


def is_finished(path: Path, iters: int) -> bool:
    """True when the run folder holds a summary of at least ``iters`` iterations."""
    return RunPaths(path).finished_summary(iters) is not None


def logged_iter(path: Path) -> int:
    """The last iteration in a run's training log (0 when none): cheap progress of a run."""
    return RunPaths(path).last_logged_iter()


def run_order(samplers: Sequence[str], seeds: Sequence[int]) -> list[tuple[int, str]]:
    """(seed, sampler) pairs, seed by seed, the sampler order rotated by one for each seed.

    The first run in a process pays warm-up costs (allocator, kernels, caches); rotating spreads
    that over the samplers instead of always charging it to the first one.
    """
    n = len(samplers)
    return [(seed, samplers[(j + k) % n]) for j, seed in enumerate(seeds) for k in range(n)]


def plan_runs(out_dir: Path, samplers: Sequence[str], seeds: Sequence[int]) -> list[RunSpec]:
    """The grid's runs in :func:`run_order`."""
    return [RunSpec(s, seed, run_dir(out_dir, s, seed)) for seed, s in run_order(samplers, seeds)]


def train_run(
    base: ExperimentConfig, run: RunSpec, show_progress: bool, callback: Any = None
) -> dict[str, Any]:
    """Train (or continue) one run of the grid in this process."""
    from ohemcli.engine.train import train

    cfg = run_config(base, run.sampler, run.seed)
    return train(cfg, run.path, resume=True, show_progress=show_progress, callback=callback)


def done_iters(path: Path, iters: int) -> int:
    """Iterations of a run already trained: ``iters`` when finished, else the last logged one."""
    return iters if is_finished(path, iters) else min(iters, logged_iter(path))
