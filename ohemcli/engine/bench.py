"""Speed and memory of the samplers, measured side by side in one process (``ohem bench``).

Only the compute of an iteration is timed (data loading is left out), after warm-up iterations,
with CUDA synchronised before each clock read. hnm's mining pass is timed once and also spread
over the iterations of one epoch, which is how often it runs by default.
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
from ohemcli.engine.mining import mine_false_positives
from ohemcli.engine.run_state import peak_memory_mb, reset_peak_memory
from ohemcli.engine.step import train_step
from ohemcli.engine.train import Trainer
from ohemcli.progress import make_progress


def _time_sampler(
    cfg: ExperimentConfig, iters: int, warmup: int, progress: Any, task: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), resume=False, show_progress=False)
        device = trainer.device
        reset_peak_memory(device)
        trainer.model.train()
        step_times, readonly = [], []
        for i, batch in enumerate(trainer._loader()):
            batch = batch.to(device)
            trainer._sync()
            start = time.perf_counter()
            result = train_step(trainer, batch)
            trainer._sync()
            trainer.state.iteration += 1
            if i >= warmup:
                step_times.append(time.perf_counter() - start)
                readonly.append(result.readonly_time)
            progress.advance(task)
        row: dict[str, Any] = {
            "sampler": cfg.sampler.name,
            "s_per_iter": statistics.median(step_times),
            "readonly_s_per_iter": statistics.median(readonly),
            "mining_pass_s": None,
            "mining_s_per_iter": 0.0,
        }
        if trainer.sampler.needs_mining:
            trainer._sync()
            start = time.perf_counter()
            mine_false_positives(
                trainer.model,
                trainer.images,
                trainer.sampler.mining_request(),
                device,
                cfg.data.workers,
                False,
                batch_size=cfg.train.images_per_batch,
            )
            trainer._sync()
            row["mining_pass_s"] = time.perf_counter() - start
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
) -> list[dict[str, Any]]:
    """Per sampler: median s/iter, read-only and mining cost, and the ratio to the first."""
    rows = []
    with make_progress(disable=not show_progress) as progress:
        for name in samplers:
            c = replace(
                cfg,
                sampler=replace(cfg.sampler, name=name),
                train=replace(cfg.train, iters=warmup + iters, eval_points=0),
            )
            task = progress.add_task(f"bench {name}", total=warmup + iters)
            rows.append(_time_sampler(c, iters, warmup, progress, task))
    base = rows[0]["effective_s_per_iter"]
    for row in rows:
        row["ratio"] = row["effective_s_per_iter"] / base
    return rows
