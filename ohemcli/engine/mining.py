"""hnm's mining pass: score every training image's proposals and report the false positives.

Under faster-rcnn the proposals are the current RPN's, at the training counts, and the pass
reports boxes with its positions (``MinedNegatives.boxes``): see ``samplers.hnm``.

Run in eval mode with no autograd, over unflipped images. Its wall-clock is the cost that the OHEM
paper argues about, so the trainer counts it apart (``mining_seconds``) and in the total, and it
is batched like training: several images per forward, loaded by the DataLoader's workers.
Images are grouped by size, so a batch needs no padding and every RoI gets the score that a
one-image forward gives it (padding would change the features near the right and bottom edges).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ohemcli.boxes import BoxNorm
from ohemcli.data.batching import Batch, TrainImages, collate
from ohemcli.device import rank_autocast
from ohemcli.engine.candidates import scored_proposals
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.progress import make_progress
from ohemcli.samplers.base import ImageRoIs, MinedNegatives, MiningRequest


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


def mining_batches(images: TrainImages, batch_size: int) -> list[list[tuple[int, bool]]]:
    """Every image once, unflipped, ``batch_size`` at a time among images of the same size."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in range(len(images)):
        record = images.dataset[i]
        by_size.setdefault((record.height, record.width), []).append(i)
    return [
        [(i, False) for i in group[start : start + batch_size]]
        for group in by_size.values()
        for start in range(0, len(group), batch_size)
    ]


def mining_loader(
    images: TrainImages, batch_size: int, workers: int, pin_memory: bool = False
) -> DataLoader:
    """The mining pass's batches (see :func:`mining_batches`), loaded by ``workers`` processes."""
    return DataLoader(
        images,
        batch_sampler=mining_batches(images, batch_size),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator(),  # keeps the global RNG (dropout's) untouched
    )


def object_scores(
    model: ScoresRoIs,
    batch: Batch,
    rois: list[Tensor] | None = None,
    features: Tensor | None = None,
) -> list[Tensor]:
    """Each image's RoIs' highest foreground probability, from one no-grad forward; ``rois``
    (default: the batch's fixed ones) on the trunk's ``features`` (default: computed here)."""
    rois = [s.rois for s in batch.samples] if rois is None else rois
    features = model.features(batch.images) if features is None else features
    logits, _ = model.roi_forward(features, rois_with_batch_index(rois))
    scores = logits.float().softmax(dim=1)[:, 1:].max(dim=1).values
    return list(scores.split([len(r) for r in rois]))


def proposal_rois(
    model: FastRCNN, features: Tensor, batch: Batch, request: MiningRequest
) -> list[ImageRoIs]:
    """faster-rcnn: each image's mining RoIs, as a training step scores them
    (``engine.candidates.scored_proposals``): the current RPN's proposals at the training counts
    (the population the sampler chooses from), the ground truth, then the pooled boxes to score
    again (``request.rescore_boxes``), labelled at ``request.fg_thresh``. The images are
    unflipped (``mining_batches``)."""
    rpn = model.rpn
    assert rpn is not None  # noqa: S101 - the caller checked
    sizes = [(int(s.image.shape[1]), int(s.image.shape[2])) for s in batch.samples]
    with rpn.test_counts(*rpn.counts("training")):
        proposals = rpn(features, sizes)[0]
    norm = BoxNorm(model.box_means, model.box_stds)
    return [
        scored_proposals(
            sample, props, request.fg_thresh, norm, request.rescore_boxes.get(sample.image_id)
        )
        for sample, props in zip(batch.samples, proposals, strict=True)
    ]


def _mine_batch(
    model: ScoresRoIs, batch: Batch, request: MiningRequest, mined: MinedNegatives
) -> None:
    """Add one batch's false positives (and rescored pool) to ``mined``."""
    rpn = getattr(model, "rpn", None)
    if rpn is None:
        labels = []
        for s in batch.samples:
            if s.labels is None:
                raise ValueError(f"{s.image_id}: a mining sample needs its RoIs' labels")
            labels.append(s.labels)
        scored = object_scores(model, batch)
    else:
        features = model.features(batch.images)
        rois = proposal_rois(model, features, batch, request)  # type: ignore[arg-type]
        labels = [r.labels for r in rois]
        scored = object_scores(model, batch, [r.boxes for r in rois], features)
    for i, (sample, scores) in enumerate(zip(batch.samples, scored, strict=True)):
        idx, fp_scores = false_positives(labels[i], scores, request.fp_thresh, request.per_image)
        if idx.numel():
            mined.per_image[sample.image_id] = (idx, fp_scores)
        if rpn is not None:
            mined.boxes[sample.image_id] = (rois[i].boxes / sample.factor).cpu()
            pooled = request.rescore_boxes.get(sample.image_id)
            if pooled is not None and len(pooled):  # the last len(pooled) RoIs of the list
                mined.rescored[sample.image_id] = scores[-len(pooled) :].float().cpu()
            continue
        watched = request.rescore.get(sample.image_id)
        if watched is not None:
            mined.rescored[sample.image_id] = scores[watched.to(scores.device)].float().cpu()


@torch.no_grad()
def mine_false_positives(
    model: ScoresRoIs,
    images: TrainImages,
    request: MiningRequest,
    device: torch.device,
    workers: int = 0,
    show_progress: bool = True,
    batch_size: int = 1,
    rank_dtype: str = "float32",
) -> MinedNegatives:
    """One mining pass over every training image (see module docstring); ``rank_dtype``
    "bfloat16" autocasts the trunk and head (RoI pooling stays float32: ``FastRCNN.pool``)."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    loader = mining_loader(images, batch_size, workers, pin_memory=device.type == "cuda")
    mined = MinedNegatives()
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("hnm mining pass", total=len(images))
        for batch in loader:
            batch = batch.to(device)
            with rank_autocast(device, rank_dtype):
                _mine_batch(model, batch, request, mined)
            progress.advance(task, len(batch.samples))
    if was_training and hasattr(model, "train"):
        model.train()
    return mined
