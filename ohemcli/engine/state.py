"""A run's running totals, carried by its checkpoint, and the schedule of its evaluations."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ohemcli.config import ExperimentConfig
from ohemcli.engine.step import IOU_BINS, StepResult
from ohemcli.runs.stability import SETTLE_EVALS
from ohemcli.samplers.regime import regime_record

WARMUP_ITERS = 10  # s/iter leaves out the first iterations (worker start-up, allocator warm-up)


def _spaced(start: int, end: int, points: int) -> set[int]:
    """``points`` evenly spaced iterations in (``start``, ``end``], ending at ``end``."""
    span = end - start
    return {start + max(1, round(span * k / points)) for k in range(1, points + 1)}


def eval_iterations(iters: int, points: int, lr_steps: Sequence[int] = ()) -> set[int]:
    """The iterations of ``points`` evaluations, the last at ``iters`` (empty for 0 points); at
    most one per iteration, however many points a config asks for.

    A run is judged settled on the evaluations after its last lr drop (``runs.stability``), so
    ``SETTLE_EVALS`` of them (or all, when fewer are asked for) sit evenly in (last drop,
    ``iters``] and the rest evenly in (0, last drop]. Without a drop inside the run all of them
    are evenly spaced.
    """
    points = min(points, iters)
    if points <= 0:
        return set()
    drops = [s for s in lr_steps if 0 < s < iters]
    if not drops:
        return _spaced(0, iters, points)
    last = max(drops)
    after = min(points, SETTLE_EVALS, iters - last)
    before = min(points - after, last)
    return _spaced(last, iters, after) | (_spaced(0, last, before) if before else set())


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
    concurrent_runs: int = 1  # most runs training on this host at once (runs.host_runs)
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
        skipped = (*counts, "parts")  # the per-part seconds are ohem bench's, not the log's
        values = {k: v for k, v in asdict(result).items() if v is not None and k not in skipped}
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
        self,
        cfg: ExperimentConfig,
        result: dict[str, Any],
        device: torch.device,
        peak_mb: float,
        devices: list[str],
        stability: dict[str, Any],
    ) -> dict[str, Any]:
        """The content of ``summary.json``, from the final evaluation's ``result``.

        ``stability`` is ``runs.stability.assess_run(...).to_dict()``: how settled the run ended.

        ``devices`` names every device of the run's ranks (``runs.host_runs.device_names``);
        with ``concurrent_runs`` it tells whether runs shared the host or a device, which slows
        each of them down (fair timing).
        """
        return {
            "sampler": cfg.sampler.name,
            "data": cfg.data.root,
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
            "eval_protocol": result.get("eval_protocol"),  # its name and limits
            "concurrent_runs": self.concurrent_runs,
            "devices": devices,
            "stability": stability,
            "regime": regime_record(cfg),
            "detector": cfg.model.detector,
            # the share of test objects the proposals offer at 100, 300 and 1,000 per image
            "proposal_source": result.get("proposal_source"),
            "proposal_recall": result.get("proposal_recall"),
        }
