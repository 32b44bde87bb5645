"""One SGD iteration with explicit inputs: features once, the optional read-only pass, sampling,
the training forward of the chosen RoIs, and the update.

Nothing here knows the trainer: :func:`choose_rois` and :func:`apply_loss` take the objects they
use, and :func:`train_step` strings them together. ``engine.train.Trainer.step`` calls it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ohemcli.data.batching import Batch
from ohemcli.engine.distributed import DistInfo, average_gradients
from ohemcli.errors import UserError
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, RoISampler

IOU_BINS = 10  # metrics.jsonl's iou_hist: [0, .1), [.1, .2), ..., [.9, 1.0]


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the weights were not updated with it."""

    def __init__(
        self, iteration: int, term: str, value: float, kept: str = "", advice: str = ""
    ) -> None:
        self.iteration, self.term, self.value = iteration, term, value
        super().__init__(
            f"train.lr: the {term} loss became {value} at iteration {iteration}; the run stopped "
            f"before updating the weights{kept} ({advice or 'try a lower train.lr'})"
        )


@dataclass
class StepResult:
    """What one iteration reports (plain numbers)."""

    loss: float
    loss_cls: float
    loss_box: float
    fg_fraction: float  # share of foreground among the chosen RoIs
    num_chosen: int
    num_fg: int = 0  # foreground RoIs among the chosen
    readonly_time: float = 0.0  # seconds of the read-only pass (ohem)
    mean_loss_chosen: float | None = None  # ohem: mean read-only loss of the chosen RoIs
    mean_loss_all: float | None = None  # ohem: mean read-only loss of every RoI
    iou_hist: list[int] = field(default_factory=lambda: [0] * IOU_BINS)  # chosen RoIs' max IoU
    step_time: float = 0.0  # seconds of the whole step, CUDA synchronised (set by Trainer.step)


@dataclass
class Chosen:
    """The RoIs a sampler picked, per image, and what the read-only pass measured."""

    indices: list[Tensor]  # positions into each image's RoIs
    readonly: list[RoILosses] | None = None  # every RoI's loss, when the sampler asked for it
    readonly_time: float = 0.0  # seconds of the read-only pass


@dataclass
class Updater:
    """What turns a loss into new weights: optimizer, lr schedule, AMP scaler, DDP ranks."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None  # float16 AMP only
    dist: DistInfo = field(default_factory=DistInfo)


def image_rois(batch: Batch) -> list[ImageRoIs]:
    """The candidate RoIs of each image of ``batch``, in the samplers' terms."""
    return [
        ImageRoIs(s.rois, s.labels, s.max_iou, s.box_targets, s.image_id) for s in batch.samples
    ]


def readonly_losses(model: FastRCNN, features: Tensor, images: list[ImageRoIs]) -> list[RoILosses]:
    """Every RoI's loss with no autograd graph, split per image."""
    with torch.no_grad():
        losses = model.roi_losses(
            features,
            rois_with_batch_index([r.boxes for r in images]),
            torch.cat([r.labels for r in images]),
            torch.cat([r.box_targets for r in images]),
        )
    sizes = [len(r.labels) for r in images]
    return [
        RoILosses(c, b)
        for c, b in zip(losses.cls.split(sizes), losses.box.split(sizes), strict=True)
    ]


def choose_rois(
    model: FastRCNN,
    sampler: RoISampler,
    features: Tensor,
    images: list[ImageRoIs],
    per_image: int,
    gen: torch.Generator,
) -> Chosen:
    """At most ``per_image`` RoIs per image, by ``sampler``; runs the read-only pass it needs."""
    readonly, readonly_time = None, 0.0
    if sampler.needs_roi_losses:
        start = time.perf_counter()
        readonly = readonly_losses(model, features, images)
        readonly_time = time.perf_counter() - start
    indices = [
        sampler.select(r, None if readonly is None else readonly[i], per_image, gen)
        for i, r in enumerate(images)
    ]
    return Chosen(indices, readonly, readonly_time)


def iou_histogram(max_iou: Tensor) -> list[int]:
    """Counts of ``max_iou`` in the bins [0, .1), [.1, .2), ..., [.9, 1.0] (1.0 in the last)."""
    edges = torch.linspace(0.1, 0.9, IOU_BINS - 1, dtype=max_iou.dtype, device=max_iou.device)
    # Each edge rounded to max_iou's dtype, so 0.1 stored as float32 falls in [.1, .2).
    bins = torch.bucketize(max_iou, edges, right=True)
    return torch.bincount(bins, minlength=IOU_BINS).tolist()


def check_finite(losses: RoILosses, count: int, iteration: int) -> None:
    """Raise :class:`NonFiniteLoss` naming the term (cls, then box) whose sum is not finite."""
    for term, values in (("cls", losses.cls), ("box", losses.box)):
        value = values.sum().item() / count
        if not math.isfinite(value):
            raise NonFiniteLoss(iteration, term, value)


def apply_loss(loss: Tensor, model: nn.Module, updater: Updater) -> None:
    """Backward, average gradients over the ranks, one optimizer step and one scheduler step."""
    optimizer, scaler = updater.optimizer, updater.scaler
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        average_gradients(model, updater.dist)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        average_gradients(model, updater.dist)
        optimizer.step()
    updater.scheduler.step()


def train_step(
    model: FastRCNN,
    sampler: RoISampler,
    batch: Batch,
    updater: Updater,
    per_image: int,
    gen: torch.Generator,
    iteration: int,
    autocast: Callable[[], AbstractContextManager] | None = None,
) -> StepResult:
    """Run iteration ``iteration`` (1-based, for messages) on ``batch`` and update the weights.

    Raises :class:`NonFiniteLoss` before any update when the loss is NaN or infinite.
    """
    images = image_rois(batch)
    with autocast() if autocast is not None else nullcontext():
        features = model.features(batch.images)
        chosen = choose_rois(model, sampler, features, images, per_image, gen)
        pairs = list(zip(images, chosen.indices, strict=True))
        labels = torch.cat([r.labels[c] for r, c in pairs])
        losses = model.roi_losses(
            features,
            rois_with_batch_index([r.boxes[c] for r, c in pairs]),
            labels,
            torch.cat([r.box_targets[c] for r, c in pairs]),
        )
        # sum / count rather than mean: a batch where the sampler finds nothing gives 0, not NaN.
        count = max(1, len(labels))
        loss = losses.total.sum() / count
    check_finite(losses, count, iteration)
    apply_loss(loss, model, updater)
    result = StepResult(
        loss=loss.item(),
        loss_cls=losses.cls.sum().item() / count,
        loss_box=losses.box.sum().item() / count,
        fg_fraction=(labels > 0).sum().item() / count,
        num_chosen=len(labels),
        num_fg=int((labels > 0).sum().item()),
        readonly_time=chosen.readonly_time,
        iou_hist=iou_histogram(torch.cat([r.max_iou[c] for r, c in pairs])),
    )
    if chosen.readonly is not None:
        picked = zip(chosen.readonly, chosen.indices, strict=True)
        result.mean_loss_chosen = torch.cat([r.total[c] for r, c in picked]).mean().item()
        result.mean_loss_all = torch.cat([r.total for r in chosen.readonly]).mean().item()
    return result
