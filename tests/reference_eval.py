"""The test split's evaluation as it was before it was sped up (issue 26, lever 3), frozen.

``reference_detect_split`` is the earlier ``ohemcli.evaluation.inference.detect_split`` verbatim:
``torch.no_grad``, each image's detections converted to numpy at once and split class by class
with ``np.unique``; ``reference_evaluate_model`` runs it, then the scoring and the files through
``score_detections`` (which the speed-up left as it was), with the cyclic GC running. The
byte-identity test and ``benchmarks/eval_throughput.py`` run them beside the current code; they
must not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ohemcli.config import ExperimentConfig, input_norm
from ohemcli.data.batching import TestImages, collate
from ohemcli.data.splits import SplitData
from ohemcli.device import loader_workers
from ohemcli.evaluation.protocols import FastRCNNTest
from ohemcli.evaluation.results_files import ClassDetections, Detections
from ohemcli.evaluation.scoring import score_detections
from ohemcli.model.fast_rcnn import FastRCNN


@torch.no_grad()
def reference_detect_split(
    model: FastRCNN,
    split: SplitData,
    cfg: ExperimentConfig,
    device: torch.device,
    show_progress: bool = True,
) -> Detections:
    """The earlier detection loop (``show_progress`` is accepted and ignored)."""
    was_training = model.training
    model.eval()
    images = TestImages(
        split.dataset, split.proposals, cfg.data.scale, cfg.data.max_size, input_norm(cfg.model)
    )
    loader = DataLoader(
        images,
        batch_size=1,
        collate_fn=collate,
        num_workers=loader_workers(cfg.data.workers),
        generator=torch.Generator(),
    )
    per_class: dict[int, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    adaptive = FastRCNNTest(len(images)) if cfg.eval.protocol == "fast-rcnn" else None
    ids: list[str] = []
    for batch in loader:
        batch = batch.to(device)
        sample = batch.samples[0]
        size = tuple(sample.image.shape[1:])
        boxes, scores, labels = model.detect(batch.images, [sample.rois], cfg.eval, [size])[0]
        boxes = (boxes / sample.factor).cpu().numpy().astype(np.float64)
        scores, labels = scores.cpu().numpy().astype(np.float64), labels.cpu().numpy()
        if adaptive is not None:
            adaptive.add(len(ids), boxes, scores, labels)
        else:
            for label in np.unique(labels):
                keep = labels == label
                per_class.setdefault(int(label), []).append(
                    (sample.image_id, scores[keep], boxes[keep])
                )
        ids.append(sample.image_id)
    if adaptive is not None:
        for image, label, kept_boxes, kept_scores in adaptive.finish(cfg.eval.nms):
            per_class.setdefault(label, []).append((ids[image], kept_scores, kept_boxes))
    if was_training:
        model.train()
    dets: Detections = {}
    for label, name in enumerate(split.dataset.classes, start=1):
        parts = per_class.get(label, [])
        dets[name] = ClassDetections(
            image_ids=[image_id for image_id, scores, _ in parts for _ in range(len(scores))],
            scores=np.concatenate([s for _, s, _ in parts]) if parts else np.zeros(0),
            boxes=np.concatenate([b for _, _, b in parts]) if parts else np.zeros((0, 4)),
        )
    return dets


def reference_evaluate_model(
    model: FastRCNN,
    cfg: ExperimentConfig,
    split: SplitData,
    device: torch.device,
    out_dir: Path | None = None,
    metric: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The earlier ``evaluate_model``: :func:`reference_detect_split`, then the scoring and the
    files (``score_detections``, which the speed-up left as it was), with the cyclic garbage
    collector left running."""
    dets = reference_detect_split(model, split, cfg, device, show_progress)
    return score_detections(dets, cfg, split, out_dir, metric)
