"""Speed and memory of the samplers, measured side by side in one process (``ohem bench``).

Only the compute of an iteration is timed (data loading is left out), after warm-up iterations,
with CUDA synchronised before each clock read. The samplers' timed iterations are interleaved, so
that the machine's slow spells (on this project's 2-core machine they moved one sampler's s/iter
by 30% between runs a minute apart) fall on every sampler alike. hnm's mining pass is timed
beside the bare no-grad forward of the same images (its floor: what remains is data loading that
the workers do not hide, and picking the false positives), and is spread over the iterations of
one epoch, which is how often it runs by default.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch

from ohemcli.config import ExperimentConfig
from ohemcli.data.batching import Batch, TrainImages
from ohemcli.device import (
    loader_workers,
    memory_in_use_mb,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    return_freed_memory,
    synchronize,
)
from ohemcli.engine.mining import mine_false_positives, mining_loader
from ohemcli.engine.step import DEFAULT_PARTS, StepParts, StepResult
from ohemcli.engine.train import Trainer
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.progress import make_progress
from ohemcli.samplers.base import MiningRequest, MiningSampler


def bare_forward_seconds(
    model: FastRCNN, images: TrainImages, device: torch.device, workers: int, batch_size: int
) -> float:
    """Seconds of the no-grad forward alone (features, then the RoI head over every RoI) over
    the mining pass's batches; loading and copying the images is not timed."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for batch in mining_loader(images, batch_size, workers, device.type == "cuda"):
            batch = batch.to(device)
            rois = rois_with_batch_index([s.rois for s in batch.samples])
            synchronize(device)
            start = time.perf_counter()
            model.roi_forward(model.features(batch.images), rois)
            synchronize(device)
            total += time.perf_counter() - start
    model.train(was_training)
    return total


def time_mining(
    model: FastRCNN,
    images: TrainImages,
    request: MiningRequest,
    device: torch.device,
    workers: int,
    batch_size: int,
    runs: int,
) -> dict[str, float]:
    """Median s/image of the whole mining pass and of the bare forward of the same images.

    The two alternate run by run in one process, so that both see the same machine load.
    """
    n = max(1, len(images))
    mining, bare = [], []
    for _ in range(runs):
        synchronize(device)
        start = time.perf_counter()
        mine_false_positives(model, images, request, device, workers, False, batch_size)
        synchronize(device)
        mining.append((time.perf_counter() - start) / n)
        bare.append(bare_forward_seconds(model, images, device, workers, batch_size) / n)
    m, f = statistics.median(mining), statistics.median(bare)
    return {"mining_s_per_image": m, "forward_s_per_image": f, "mining_overhead": m / f - 1}


# The parts of a step (engine.step.StepParts), in the order they run.
STEP_PARTS = tuple(f.name for f in fields(StepParts))


class PartClock:
    """Seconds of each part of a step, CUDA synchronised before and after it (on the CPU the
    syncs are no-ops). :meth:`timed` wraps a step's parts; :meth:`take` hands over one step's."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.parts: dict[str, float] = {}

    def timed(self, parts: StepParts = DEFAULT_PARTS) -> StepParts:
        """``parts`` with each one wrapped to add its seconds under its name."""

        def wrap(name: str, part: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                synchronize(self.device)
                start = time.perf_counter()
                out = part(*args)
                synchronize(self.device)
                self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - start
                return out

            return run

        return StepParts(**{name: wrap(name, getattr(parts, name)) for name in STEP_PARTS})

    def take(self) -> dict[str, float]:
        """The seconds of each part since the last take (a part that did not run is absent)."""
        parts, self.parts = self.parts, {}
        return parts


def median_parts(parts: list[dict[str, float]]) -> dict[str, float]:
    """Median seconds of each of :data:`STEP_PARTS` over the iterations (0 where a sampler
    has no such part: the read-only pass of fixed, say)."""
    return {
        name: statistics.median(p.get(name, 0.0) for p in parts) if parts else 0.0
        for name in STEP_PARTS
    }


@dataclass
class _SamplerBench:
    """One sampler's trainer in a bench, its remaining batches and what was measured of it."""

    cfg: ExperimentConfig
    trainer: Trainer
    batches: Generator[Batch, None, None]
    task: Any  # its progress bar
    growth_mb: float  # the most memory it added to what was in use before it (MiB)
    clock: PartClock  # times the parts of its trainer's steps
    results: list[StepResult] = field(default_factory=list)  # its timed iterations
    parts: list[dict[str, float]] = field(default_factory=list)  # their parts' seconds
    syncs: list[int | None] = field(default_factory=list)  # their host syncs (None: not counted)


def _start(
    cfg: ExperimentConfig, folder: Path, warmup: int, progress: Any, label: str = ""
) -> _SamplerBench:
    """Build the sampler's trainer and run its ``warmup`` iterations, measuring the memory that
    the two add to what the process held before; ``label`` names its progress bar."""
    device = resolve_device(cfg.train.device)
    return_freed_memory()  # else its allocations reuse pages the trainers before it freed
    before = memory_in_use_mb(device)
    reset_peak_memory(device)
    trainer = Trainer(cfg, folder, resume=False, show_progress=False)
    trainer.model.train()
    clock = PartClock(device)
    trainer.step_parts = clock.timed()  # each part CUDA synchronised
    trainer.measure_health = False  # its extra head pass would tax the samplers without one
    task = progress.add_task(label or f"bench {cfg.sampler.name}", total=cfg.train.iters)
    batches = trainer.batches()
    for _ in range(warmup):
        trainer.step(next(batches))
        progress.advance(task)
    clock.take()  # the warm-up's parts are not reported
    return _SamplerBench(cfg, trainer, batches, task, peak_memory_mb(device) - before, clock)


# What CUDA's sync debug mode says when an op makes the host wait for the device.
SYNC_WARNING = "called a synchronizing CUDA operation"


def count_host_syncs(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """``fn()``'s result and how many times it made the host wait for the device, as CUDA's sync
    debug mode reports them (``.item()``, ``nonzero``, copies to the host ...); None on a device
    without that mode (the CPU never waits). The bench's own ``torch.cuda.synchronize`` around
    each timed part is explicit and not counted."""
    if device.type != "cuda":
        return fn(), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum(SYNC_WARNING in str(w.message) for w in caught)


def _interleave(benches: list[_SamplerBench], iters: int, progress: Any) -> None:
    """``iters`` timed iterations of every sampler, interleaved: iteration i of each before
    iteration i + 1 of any, the order rotated by one each time, so that a slow spell of the
    machine falls on all the samplers alike instead of on the one timed then."""
    for i in range(iters):
        for j in range(len(benches)):
            bench = benches[(i + j) % len(benches)]
            step = partial(bench.trainer.step, next(bench.batches))
            result, syncs = count_host_syncs(bench.trainer.device, step)
            bench.results.append(result)
            bench.syncs.append(syncs)
            bench.parts.append(bench.clock.take())
            progress.advance(bench.task)


def _row(bench: _SamplerBench, base_mb: float, mining_runs: int) -> dict[str, Any]:
    """The sampler's figures: medians of its timed iterations, its mining pass (timed here) and
    its peak memory (``base_mb``, what the process held before any trainer, plus its growth)."""
    cfg, trainer, results = bench.cfg, bench.trainer, bench.results
    device = trainer.device
    row: dict[str, Any] = {
        "sampler": cfg.sampler.name,
        "iters": trainer.state.iteration,
        "final_loss": trainer.state.smoothed_loss,  # as summary.json's: EMA at the end
        "s_per_iter": statistics.median(r.step_time for r in results),
        "readonly_s_per_iter": statistics.median(r.readonly_time for r in results),
        "mining_pass_s": None,
        "mining_s_per_iter": 0.0,
        "mining_s_per_image": None,
        "forward_s_per_image": None,
        "mining_overhead": None,
        "parts": median_parts(bench.parts),
        # Host waits for the device per iteration (CUDA's sync debug mode); None on the CPU.
        "host_syncs_per_iter": (
            None
            if not bench.syncs or None in bench.syncs
            else statistics.median(cast(list[int], bench.syncs))
        ),
    }
    if trainer.sampler.needs_mining:
        sampler = cast(MiningSampler, trainer.sampler)  # needs_mining promises the rest
        return_freed_memory()
        before = memory_in_use_mb(device)
        reset_peak_memory(device)
        timing = time_mining(
            trainer.model,
            trainer.images,
            sampler.mining_request(),
            device,
            loader_workers(cfg.data.workers),
            cfg.train.images_per_batch,
            mining_runs,
        )
        bench.growth_mb = max(bench.growth_mb, peak_memory_mb(device) - before)
        row.update(timing)
        row["mining_pass_s"] = timing["mining_s_per_image"] * len(trainer.images)
        per_epoch = max(1, len(trainer.images) // cfg.train.images_per_batch)
        every = cfg.sampler.mine_every or per_epoch
        row["mining_s_per_iter"] = row["mining_pass_s"] / every
    row["effective_s_per_iter"] = row["s_per_iter"] + row["mining_s_per_iter"]
    row["peak_memory_mb"] = base_mb + bench.growth_mb
    row["device"] = str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)
    row["amp"] = cfg.train.amp
    return row


def bench_samplers(
    cfg: ExperimentConfig,
    samplers: Sequence[str],
    iters: int = 20,
    warmup: int = 3,
    show_progress: bool = True,
    mining_runs: int = 3,
) -> list[dict[str, Any]]:
    """Per sampler: median s/iter, read-only and mining cost, and the ratio to the first.

    Every sampler's trainer is built and warmed up in turn, and its peak memory measured then:
    the process's memory before any trainer plus what this one adds (CUDA's allocated bytes, or
    resident memory on the CPU, after the heap's free pages are handed back). Then the timed
    iterations of all of them are interleaved (see :func:`_interleave`). For a sampler that
    mines, the mining pass and the bare forward of the same images are timed ``mining_runs``
    times each, alternately (see :func:`time_mining`); the medians are reported.
    """
    device = resolve_device(cfg.train.device)
    configs = [
        replace(
            cfg,
            sampler=replace(cfg.sampler, name=name),
            train=replace(cfg.train, iters=warmup + iters, eval_points=0),
        )
        for name in samplers
    ]
    with make_progress(disable=not show_progress) as progress, ExitStack() as stack:
        # A throw-away trainer first: the process's one-time costs (kernel selection, lazy
        # imports, caches) then go to the base memory and to no sampler's first iterations.
        with tempfile.TemporaryDirectory() as tmp:
            short = replace(configs[0], train=replace(configs[0].train, iters=2))
            _start(short, Path(tmp), 2, progress, "bench warm-up").batches.close()
        gc.collect()  # the throw-away trainer's cycles, before the base is read
        return_freed_memory()
        base_mb = memory_in_use_mb(device)
        benches = []
        for c in configs:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            benches.append(_start(c, folder, warmup, progress))
        _interleave(benches, iters, progress)
        rows = [_row(b, base_mb, mining_runs) for b in benches]
        for b in benches:
            b.batches.close()  # its DataLoader's workers end here
    base = rows[0]["effective_s_per_iter"]
    for row in rows:
        row["ratio"] = row["effective_s_per_iter"] / base
    return rows


def evaluation_speed(
    cfg: ExperimentConfig, runs: int, show_progress: bool = True
) -> dict[str, Any]:
    """Median test images/s of ``runs`` whole evaluations (detection, scoring, and the files,
    written to a temporary folder) of the test split, by a model with ``cfg``'s initial weights.

    The figure does not depend on the weights beyond the number of detections they pass to NMS
    and the files; ``benchmarks/eval_throughput.py`` times a trained run's and splits the time.
    """
    from ohemcli.data.splits import load_split
    from ohemcli.device import resolve_device
    from ohemcli.evaluation.evaluate import evaluate_model
    from ohemcli.model.fast_rcnn import build_model

    device = resolve_device(cfg.train.device)
    split = load_split(cfg, "test", show_progress)
    model = build_model(cfg, split.dataset.num_classes, device)
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            synchronize(device)
            start = time.perf_counter()
            evaluate_model(model, cfg, split, device, Path(tmp), show_progress=False)
            synchronize(device)
            rates.append(len(split.dataset) / (time.perf_counter() - start))
    return {"images": len(split.dataset), "runs": runs, "images_per_s": statistics.median(rates)}
