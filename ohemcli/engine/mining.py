"""hnm's mining pass: score every training image's proposals and pool the false positives.

Run in eval mode with no autograd, over unflipped images. Its wall-clock is the cost that the OHEM
paper argues about, so the trainer counts it apart (``mining_seconds``) and in the total.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ohemcli.config import SamplerConfig
from ohemcli.data.batching import TrainImages, collate
from ohemcli.model.fast_rcnn import rois_with_batch_index
from ohemcli.progress import make_progress
from ohemcli.samplers.base import MinedNegatives


class ScoresRoIs(Protocol):
    """The two model calls mining needs (a test double can stand in for FastRCNN)."""

    def features(self, images: Tensor) -> Tensor: ...
    def roi_forward(self, features: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]: ...


def false_positives(
    labels: Tensor, object_scores: Tensor, thresh: float, per_image: int
) -> tuple[Tensor, Tensor]:
    """Background RoIs scored as objects: positions and scores, highest first, capped.

    ``labels`` are the RoIs' training labels (0 = background, i.e. max IoU < 0.5), ``object_scores``
    each RoI's highest foreground class probability.
    """
    candidates = torch.nonzero((labels == 0) & (object_scores >= thresh)).flatten()
    scores = object_scores[candidates]
    order = torch.sort(scores, descending=True, stable=True).indices[:per_image]
    return candidates[order].cpu(), scores[order].float().cpu()


@torch.no_grad()
def mine_false_positives(
    model: ScoresRoIs,
    images: TrainImages,
    cfg: SamplerConfig,
    device: torch.device,
    workers: int = 0,
    show_progress: bool = True,
) -> MinedNegatives:
    """One mining pass over every training image (see module docstring)."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    loader = DataLoader(
        images,
        batch_sampler=[[(i, False)] for i in range(len(images))],
        collate_fn=collate,
        num_workers=workers,
        generator=torch.Generator(),  # keeps the global RNG (dropout's) untouched
    )
    mined = MinedNegatives()
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("hnm mining pass", total=len(images))
        for batch in loader:
            batch = batch.to(device)
            sample = batch.samples[0]
            logits, _ = model.roi_forward(
                model.features(batch.images), rois_with_batch_index([sample.rois])
            )
            object_scores = logits.float().softmax(dim=1)[:, 1:].max(dim=1).values
            idx, scores = false_positives(
                sample.labels, object_scores, cfg.hnm_fp_thresh, cfg.hnm_pool_per_image
            )
            if idx.numel():
                mined.per_image[sample.image_id] = (idx, scores)
            progress.advance(task)
    if was_training and hasattr(model, "train"):
        model.train()
    return mined
