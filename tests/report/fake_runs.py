"""Finished run folders built by hand: a summary, a config, logs and (optionally) real matches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.data.voc import ImageRecord
from ohemcli.evaluation.matches import matches_from_result, save_matches
from ohemcli.evaluation.results_files import ClassDetections
from ohemcli.evaluation.voc_ap import evaluate_voc
from ohemcli.runs.paths import RunPaths

CLASSES = ("disc", "ring")
BOX = np.array([20.0, 20.0, 80.0, 80.0])
FAR = np.array([150.0, 150.0, 200.0, 200.0])


def voc_test_set(n_images: int = 40) -> list[ImageRecord]:
    """``n_images`` images with one object each (classes alternate) at ``BOX``."""
    return [
        ImageRecord(f"im{i:03d}", Path(f"im{i:03d}.jpg"), 256, 256, BOX[None].astype(np.float32),
                    np.array([1 + i % 2]), np.array([False]))
        for i in range(n_images)
    ]  # fmt: skip


def detections(
    records: list[ImageRecord], rng: np.random.Generator, tp_scores: tuple, fp_scores: tuple
) -> dict[str, ClassDetections]:
    """On every image a hit on its object and a false positive far from it, of its class,
    with scores uniform in ``tp_scores`` / ``fp_scores``."""
    rows: dict[str, tuple[list, list, list]] = {c: ([], [], []) for c in CLASSES}
    for r in records:
        ids, scores, boxes = rows[CLASSES[int(r.labels[0]) - 1]]
        ids += [r.image_id, r.image_id]
        scores += [rng.uniform(*tp_scores), rng.uniform(*fp_scores)]
        boxes += [BOX + rng.normal(0, 1, 4), FAR]
    return {c: ClassDetections(*rows[c]) for c in CLASSES}


def fake_run(
    root: Path,
    sampler: str,
    seed: int,
    mAP: float,
    history: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    **summary: Any,
) -> RunPaths:
    """A finished run folder as engine.train leaves it (summary, config, metrics, evals)."""
    paths = RunPaths(root / f"{sampler}-s{seed}")
    paths.root.mkdir(parents=True)
    cfg = config_to_dict(ExperimentConfig())
    cfg["sampler"]["name"], cfg["train"]["seed"] = sampler, seed
    paths.config.write_text(yaml.safe_dump(cfg))
    if history is None:
        history = [
            {"iter": i, "mAP": mAP * i / 4, "train_seconds": i, "mining_seconds": 0,
             "wall_seconds": i}
            for i in (2, 4)
        ]  # fmt: skip
    base = {
        "sampler": sampler, "data": "synth", "seed": seed, "iters": 4, "metric": "voc07",
        "mAP": mAP, "AP": {"disc": mAP, "ring": mAP / 2}, "train_seconds": 4.0,
        "mining_seconds": 0.0, "eval_seconds": 1.0, "total_seconds": 4.0, "readonly_seconds": 0.0,
        "s_per_iter": 1.0, "mining_passes": 0, "fg_fraction": 0.25, "peak_memory_mb": 50.0,
        "device": "cpu", "machine": "x86_64 Linux, 2 threads",
    }  # fmt: skip
    paths.summary.write_text(json.dumps(base | summary))
    paths.evals.write_text("".join(json.dumps(x) + "\n" for x in history))
    if metrics is None:
        metrics = [{"iter": i, "loss": 1.0 / i, "fg_fraction": 0.25} for i in (2, 4, 4)]
    paths.metrics.write_text("".join(json.dumps(x) + "\n" for x in metrics))
    return paths


def evaluated_run(
    root: Path,
    sampler: str,
    seed: int,
    make: Callable[[list[ImageRecord], np.random.Generator], dict[str, ClassDetections]],
    records: list[ImageRecord],
    draw: int | None = None,
) -> float:
    """A run folder whose mAP and matches come from evaluating ``make``'s detections
    (drawn with random seed ``draw``; by default one of its own per sampler and seed)."""
    draw = 1000 * seed + sum(map(ord, sampler)) if draw is None else draw
    dets = make(records, np.random.default_rng(draw))
    result = evaluate_voc(dets, records, CLASSES)
    paths = fake_run(root, sampler, seed, result.mAP, AP=result.ap)
    paths.eval_dir.mkdir()
    save_matches(paths.matches, matches_from_result(result, [r.image_id for r in records]))
    return result.mAP
