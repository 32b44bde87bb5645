"""Speed and memory of the samplers, measured side by side in one process (``ohem bench``).

Only the compute of an iteration is timed (data loading is left out), after warm-up iterations,
with CUDA synchronised before each clock read. hnm's mining pass is timed beside the bare no-grad
forward of the same images (its floor: what remains is data loading that the workers do not hide,
and picking the false positives), and is spread over the iterations of one epoch, which is how
often it runs by default.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ohemcli.config import ExperimentConfig
from ohemcli.data.batching import TrainImages
from ohemcli.device import loader_workers, peak_memory_mb, reset_peak_memory, synchronize
from ohemcli.engine.mining import mine_false_positives, mining_loader
from ohemcli.engine.train import Trainer
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.progress import make_progress
from ohemcli.samplers.base import MiningRequest


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


# The parts of a step (engine.step.train_step), in the order they run.
STEP_PARTS = ("trunk", "readonly_pool", "readonly_head", "select", "pool", "head", "backward")


def median_parts(parts: list[dict[str, float]]) -> dict[str, float]:
    """Median seconds of each of :data:`STEP_PARTS` over the iterations (0 where a sampler has
    no such part: the read-only pass of fixed, say)."""
    return {
        name: statistics.median(p.get(name, 0.0) for p in parts) if parts else 0.0
        for name in STEP_PARTS
    }


def _time_sampler(
    cfg: ExperimentConfig, iters: int, warmup: int, mining_runs: int, progress: Any, task: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), resume=False, show_progress=False)
        device = trainer.device
        reset_peak_memory(device)
        trainer.model.train()
        trainer.time_parts = True  # each part CUDA synchronised: StepResult.parts
        step_times, readonly, parts = [], [], []
        for i, batch in enumerate(trainer.batches()):
            result = trainer.step(batch)  # step_time: compute only, CUDA synchronised
            if i >= warmup:
                step_times.append(result.step_time)
                readonly.append(result.readonly_time)
                parts.append(result.parts)
            progress.advance(task)
        row: dict[str, Any] = {
            "sampler": cfg.sampler.name,
            "iters": trainer.state.iteration,
            "final_loss": trainer.state.smoothed_loss,  # as summary.json's: EMA at the end
            "s_per_iter": statistics.median(step_times),
            "readonly_s_per_iter": statistics.median(readonly),
            "mining_pass_s": None,
            "mining_s_per_iter": 0.0,
            "mining_s_per_image": None,
            "forward_s_per_image": None,
            "mining_overhead": None,
            "parts": median_parts(parts),
        }
        if trainer.sampler.needs_mining:
            timing = time_mining(
                trainer.model,
                trainer.images,
                trainer.sampler.mining_request(),
                device,
                loader_workers(cfg.data.workers),
                cfg.train.images_per_batch,
                mining_runs,
            )
            row.update(timing)
            row["mining_pass_s"] = timing["mining_s_per_image"] * len(trainer.images)
            per_epoch = max(1, len(trainer.images) // cfg.train.images_per_batch)
            every = cfg.sampler.mine_every or per_epoch
            row["mining_s_per_iter"] = row["mining_pass_s"] / every
        row["effective_s_per_iter"] = row["s_per_iter"] + row["mining_s_per_iter"]
        row["peak_memory_mb"] = peak_memory_mb(device)
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

    For a sampler that mines, the mining pass and the bare forward of the same images are timed
    ``mining_runs`` times each, alternately (see :func:`time_mining`); the medians are reported.
    """
    rows = []
    with make_progress(disable=not show_progress) as progress:
        for name in samplers:
            c = replace(
                cfg,
                sampler=replace(cfg.sampler, name=name),
                train=replace(cfg.train, iters=warmup + iters, eval_points=0),
            )
            task = progress.add_task(f"bench {name}", total=warmup + iters)
            rows.append(_time_sampler(c, iters, warmup, mining_runs, progress, task))
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
