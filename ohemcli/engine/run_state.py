"""A run's folder layout and the running totals that its checkpoint and summary carry."""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ohemcli.config import ExperimentConfig

if TYPE_CHECKING:
    from ohemcli.engine.step import StepResult

WARMUP_ITERS = 10  # s/iter leaves out the first iterations (worker start-up, allocator warm-up)


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
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def finished_summary(self, iters: int) -> dict[str, Any] | None:
        """The run's summary when it was trained to at least ``iters`` iterations, else None."""
        if not self.summary.is_file():
            return None
        summary = json.loads(self.summary.read_text(encoding="utf-8"))
        return summary if summary.get("iters", 0) >= iters else None


def eval_iterations(iters: int, points: int) -> set[int]:
    """``points`` evenly spaced iterations ending at ``iters`` (empty for 0 points)."""
    return (
        {max(1, round(iters * k / points)) for k in range(1, points + 1)} if points > 0 else set()
    )


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak: CUDA's allocator counter, or the process's VmHWM on Linux."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or the process's peak resident memory on the CPU, in MiB.

    On Linux the CPU figure is VmHWM, which :func:`reset_peak_memory` resets per run; elsewhere it
    is the process's lifetime peak.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        line = next(x for x in status if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


@dataclass
class TrainState:
    """Running totals, saved in the checkpoint so that a resumed run keeps counting."""

    iteration: int = 0
    train_seconds: float = 0.0
    mining_seconds: float = 0.0
    eval_seconds: float = 0.0
    readonly_seconds: float = 0.0
    steady_seconds: float = 0.0  # step + data time after the warm-up iterations
    steady_iters: int = 0
    mining_passes: int = 0
    mined_at: int = -1  # iteration after which the last mining pass ran
    last_pool_size: int = 0
    next_log: dict[str, Any] = field(default_factory=dict)  # added as is to the next log line
    fg_sum: float = 0.0
    smoothed_loss: float = 0.0
    recent_s_per_iter: float = 0.0
    concurrent_runs: int = 1  # most runs training on this host at once (engine.sharing)
    window: dict[str, list[float]] = field(default_factory=dict)  # values since the last log line
    eval_history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, result: StepResult, step_time: float, data_time: float) -> None:
        """Count one finished iteration."""
        self.iteration += 1
        self.train_seconds += step_time + data_time
        self.readonly_seconds += result.readonly_time
        self.fg_sum += result.fg_fraction
        if self.iteration > WARMUP_ITERS:
            self.steady_seconds += step_time + data_time
            self.steady_iters += 1
        self.smoothed_loss = (
            result.loss if self.iteration == 1 else 0.9 * self.smoothed_loss + 0.1 * result.loss
        )
        self.recent_s_per_iter = step_time + data_time
        values = {k: v for k, v in asdict(result).items() if v is not None and k != "num_chosen"}
        values.update(step_time=step_time, data_time=data_time)
        for key, value in values.items():
            self.window.setdefault(key, []).append(float(value))

    def log_line(self, iteration: int, lr: float) -> dict[str, Any]:
        """One metrics.jsonl object: the means since the last line, then a fresh window."""
        line: dict[str, Any] = {"iter": iteration, "lr": lr}
        line.update({k: sum(v) / len(v) for k, v in self.window.items()})
        self.window = {}
        line.update(self.next_log)
        self.next_log = {}
        return line

    @property
    def s_per_iter(self) -> float:
        """Mean seconds per iteration after warm-up (all iterations for very short runs)."""
        if self.steady_iters > 0:
            return self.steady_seconds / self.steady_iters
        return self.train_seconds / max(1, self.iteration)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)

    def summary(
        self, cfg: ExperimentConfig, result: dict[str, Any], device: torch.device, peak_mb: float
    ) -> dict[str, Any]:
        """The content of ``summary.json``."""
        return {
            "sampler": cfg.sampler.name,
            "data": cfg.data.data,
            "seed": cfg.train.seed,
            "iters": self.iteration,
            "metric": result.get("metric", cfg.eval.metric),
            "mAP": result["mAP"],
            "AP": result.get("AP", {}),
            "train_seconds": self.train_seconds,
            "mining_seconds": self.mining_seconds,
            "eval_seconds": self.eval_seconds,
            "total_seconds": self.train_seconds + self.mining_seconds,
            "readonly_seconds": self.readonly_seconds,
            "s_per_iter": self.s_per_iter,
            "mining_passes": self.mining_passes,
            "fg_fraction": self.fg_sum / max(1, self.iteration),
            "peak_memory_mb": peak_mb,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "machine": f"{platform.machine()} {platform.system()}, "
            f"{torch.get_num_threads()} threads",
            "eval_history": self.eval_history,
        }
