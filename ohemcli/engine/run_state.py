"""A run's folder layout and the running totals that its checkpoint and summary carry."""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ohemcli.config import ExperimentConfig
from ohemcli.engine.step import IOU_BINS, StepResult
from ohemcli.fileio import read_json

WARMUP_ITERS = 10  # s/iter leaves out the first iterations (worker start-up, allocator warm-up)


# Every file name of a run folder and of a compare folder is spelled here and nowhere else
# (tests/engine/test_run_paths.py greps the package for them).
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
        """Per class, the ranked detections' image, TP and FP flags (engine.matches)."""
        return self.root / "matches.npz"


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
        """The final evaluation: devkit results files, metrics.json, matches.npz."""
        return self.root / "eval"

    @property
    def eval_metrics(self) -> Path:
        return EvalPaths(self.eval_dir).metrics

    @property
    def matches(self) -> Path:
        return EvalPaths(self.eval_dir).matches

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def lock(self) -> Path:
        """Held (fcntl.flock) by the one process that writes the run folder."""
        return self.root / "run.lock"

    def finished_summary(self, iters: int) -> dict[str, Any] | None:
        """The run's summary when it was trained to at least ``iters`` iterations, else None."""
        if not self.summary.is_file():
            return None
        summary = read_json(self.summary)
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
        """``OUT/runs/<sampler>-s<seed>``."""
        return RunPaths(self.root / "runs" / f"{sampler}-s{seed}")

    def finished_runs(self) -> list[Path]:
        """Run folders under ``runs/`` that have a summary."""
        return sorted(p.parent for p in self.root.glob(f"runs/*/{RunPaths(Path()).summary.name}"))

    def any_checkpoint(self) -> bool:
        """True once any run of the folder has started training."""
        return any(self.root.glob(f"runs/*/{RunPaths(Path()).checkpoint.name}"))

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
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def plot(self, name: str) -> Path:
        """``plots/<name>.png`` for a name in ``PLOT_NAMES``."""
        return self.plots_dir / f"{name}.png"


def run_dirs(path: Path) -> list[Path]:
    """A run folder itself, or every finished run of a compare folder; [] when neither."""
    path = Path(path)
    return [path] if RunPaths(path).summary.is_file() else ComparePaths(path).finished_runs()


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config (as a plain dict) without what a compare varies per run: sampler name and seed.

    Two runs, or a compare folder and a new request, have the same setting when these agree.
    """
    c = json.loads(json.dumps(config))
    c.get("sampler", {}).pop("name", None)
    c.get("train", {}).pop("seed", None)
    return c


def setting_hash(config: dict[str, Any]) -> str:
    """Short hash of :func:`comparable_config` (equal for runs of one comparison)."""
    text = json.dumps(comparable_config(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


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
    window_iou_hist: list[int] = field(default_factory=lambda: [0] * IOU_BINS)  # max-IoU counts
    window_fg: int = 0  # foreground RoIs chosen since the last log line
    window_chosen: int = 0  # RoIs chosen since the last log line
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
        # Counts are summed over the window (fg_fraction is pooled from them), not averaged.
        counts = ("num_chosen", "num_fg", "iou_hist", "fg_fraction")
        values = {k: v for k, v in asdict(result).items() if v is not None and k not in counts}
        values.update(step_time=step_time, data_time=data_time)
        for key, value in values.items():
            self.window.setdefault(key, []).append(float(value))
        self.window_iou_hist = [
            a + b for a, b in zip(self.window_iou_hist, result.iou_hist, strict=True)
        ]
        self.window_fg += result.num_fg
        self.window_chosen += result.num_chosen

    def log_line(self, iteration: int, lr: float) -> dict[str, Any]:
        """One metrics.jsonl object over the iterations since the last line, then a fresh window.

        Per-iteration values are averaged; ``fg_fraction`` is the foreground share of all RoIs
        chosen in the window and ``iou_hist`` sums their max-IoU histograms.
        """
        line: dict[str, Any] = {"iter": iteration, "lr": lr}
        line.update({k: sum(v) / len(v) for k, v in self.window.items()})
        line["fg_fraction"] = self.window_fg / max(1, self.window_chosen)
        line["iou_hist"] = self.window_iou_hist
        self.window, self.window_iou_hist = {}, [0] * IOU_BINS
        self.window_fg = self.window_chosen = 0
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
            "final_loss": self.smoothed_loss,  # training loss at the end (EMA, weight 0.1 per step)
            "mining_passes": self.mining_passes,
            "fg_fraction": self.fg_sum / max(1, self.iteration),
            "peak_memory_mb": peak_mb,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "machine": f"{platform.machine()} {platform.system()}, "
            f"{torch.get_num_threads()} threads",
            "eval_history": self.eval_history,
            "eval_protocol": result.get("eval_protocol"),  # max_dets, score_thresh, nms
        }
