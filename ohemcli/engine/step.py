"""One SGD iteration with explicit inputs: features once, the optional read-only pass, sampling,
the training forward of the chosen RoIs, and the update.

Nothing here knows the trainer: each part of a step (:class:`StepParts`) takes the objects it
uses, and :func:`train_step` strings them together. ``engine.train.Trainer.step`` calls it;
``engine.bench`` times the parts by handing the step wrapped ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import torch
from torch import Tensor, nn

from ohemcli.data.batching import Batch
from ohemcli.device import rank_autocast
from ohemcli.engine.candidates import CandidateSource, candidate_rois
from ohemcli.engine.distributed import DistInfo, any_rank, average_gradients, gather_objects
from ohemcli.engine.health import classifier_health
from ohemcli.errors import UserError
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.model.losses import LossTerms, RoILosses
from ohemcli.model.roi_pooling import PooledRoIs
from ohemcli.samplers.base import ImageRoIs, RoISampler, Selection, as_selection
from ohemcli.samplers.loss import batch_loss

IOU_BINS = 10  # metrics.jsonl's iou_hist: [0, .1), [.1, .2), ..., [.9, 1.0]
# torchvision's RPN loss names, as a NaN message says them
RPN_TERM_NAMES = {"loss_objectness": "RPN objectness", "loss_rpn_box_reg": "RPN box"}


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the weights were not updated with it."""

    def __init__(
        self,
        iteration: int,
        term: str,
        value: float,
        kept: str = "",
        advice: str = "",
        where: str = "",
    ) -> None:
        self.iteration, self.term, self.value, self.where = iteration, term, value, where
        super().__init__(
            f"train.lr: the {term} loss{where} became {value} at iteration {iteration}; the run "
            f"stopped before updating the weights{kept} ({advice or 'try a lower train.lr'})"
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
    # Run health (runs.stability), measured on logging steps: the mean probability of the true
    # class on the batch's foreground RoIs, and the mean highest foreground probability on its
    # background RoIs; None when the batch has none of that kind or the step did not measure.
    # A classifier stuck at the class prior gives both the same value. Every candidate RoI
    # counts, not only the chosen: a hard-mining sampler chooses the RoIs its classifier gets
    # wrong, and on those the two means meet while it learns (ohem on BCCD: 0.45 and 0.44).
    p_true_fg: float | None = None
    p_top_bg: float | None = None
    step_time: float = 0.0  # seconds of the whole step, CUDA synchronised (set by Trainer.step)
    # faster-rcnn: the RPN's two loss terms (in ``loss``) and the RoIs each image offered
    loss_rpn_cls: float | None = None
    loss_rpn_box: float | None = None
    candidates_per_image: float | None = None  # candidate RoIs (proposals, ground truth, pooled)


@dataclass
class Chosen:
    """The RoIs a sampler picked, per image, and what the read-only pass measured."""

    indices: list[Tensor]  # positions into each image's RoIs
    selections: list[Selection] = field(default_factory=list)  # with weights and loss, per image
    readonly: list[RoILosses] | None = None  # every RoI's loss, when the sampler asked for it
    pooled: PooledRoIs | None = None  # every RoI's pooling of the read-only pass, for the chosen
    # Seconds of the read-only pass (0 without one), not CUDA synchronised: on CUDA it counts
    # the launches, as the syncs would cost the run time.
    readonly_time: float = 0.0


@dataclass
class Updater:
    """What turns a loss into new weights: optimizer, lr schedule, AMP scaler, DDP ranks."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None  # float16 AMP only
    dist: DistInfo = field(default_factory=DistInfo)


def readonly_pool(model: FastRCNN, features: Tensor, images: list[ImageRoIs]) -> PooledRoIs:
    """Every RoI of ``images`` pooled once, without autograd (``FastRCNN.rank_pool``)."""
    return model.rank_pool(features, rois_with_batch_index([r.boxes for r in images]))


def readonly_head(
    model: FastRCNN,
    features: Tensor,
    images: list[ImageRoIs],
    ranked: PooledRoIs,
    with_boxes: bool = False,
    rank_dtype: str = "float32",
    dropout: bool = True,
) -> list[RoILosses]:
    """Every RoI's loss and logits (``with_boxes``: and decoded box) from the pooling
    ``ranked`` with no autograd graph, split per image: the head over the pooled rows in
    ``rank_dtype`` (see :func:`ohemcli.device.rank_autocast`). ``dropout``: the head ranks with
    dropout on (the OHEM release's read-only net) or off (mmdetection's heads have no
    dropout)."""
    # float32 ranks on rank_pool's float32 rows as they are (rank_autocast turns autocast off,
    # so a bf16 copy would meet float32 weights); bfloat16 ranks under its own autocast.
    pooled = ranked.pooled if rank_dtype == "float32" else ranked.pooled.to(features.dtype)
    # The head runs over every RoI here, before the training forward draws its own dropout masks.
    with torch.no_grad(), rank_autocast(features.device, rank_dtype), model.head_dropout(dropout):
        labels = torch.cat([r.labels for r in images])
        targets = torch.cat([r.box_targets for r in images])
        losses = model.head_losses(pooled, ranked.rois, labels, targets, with_boxes)
    sizes = [len(r.labels) for r in images]

    def split(t: Tensor | None) -> list[Tensor | None]:
        return [None] * len(sizes) if t is None else list(t.split(sizes))

    return [RoILosses(*p) for p in zip(*(split(t) for t in losses), strict=True)]


def readonly_losses(
    model: FastRCNN,
    features: Tensor,
    images: list[ImageRoIs],
    with_boxes: bool = False,
    rank_dtype: str = "float32",
    dropout: bool = True,
) -> tuple[list[RoILosses], PooledRoIs]:
    """The read-only pass: :func:`readonly_pool`, then :func:`readonly_head`; returns the
    per-image losses and the pooling they came from."""
    ranked = readonly_pool(model, features, images)
    return readonly_head(model, features, images, ranked, with_boxes, rank_dtype, dropout), ranked


def select_rois(
    sampler: RoISampler,
    images: list[ImageRoIs],
    readonly: list[RoILosses] | None,
    per_image: int,
    gen: torch.Generator,
) -> list[Selection]:
    """The sampler's checked choice of at most ``per_image`` RoIs per image."""
    return [
        as_selection(
            sampler.select(r, None if readonly is None else readonly[i], per_image, gen),
            len(r.labels),
            r.labels.device,  # every sampler's answer, plugins' too, moves to the RoIs' device
        )
        for i, r in enumerate(images)
    ]


def choose_rois(
    model: FastRCNN,
    sampler: RoISampler,
    features: Tensor,
    images: list[ImageRoIs],
    per_image: int,
    gen: torch.Generator,
    rank_dtype: str = "float32",
    rank_dropout: bool = True,
    parts: StepParts | None = None,
) -> Chosen:
    """At most ``per_image`` RoIs per image, by ``sampler``; runs the read-only pass it needs,
    in ``rank_dtype`` (with dropout when ``rank_dropout``), and times it
    (``Chosen.readonly_time``). ``parts``: the step's parts to call (default: the plain ones)."""
    parts = parts or DEFAULT_PARTS
    readonly = ranked = None
    start = time.perf_counter()
    if sampler.needs_roi_losses:
        ranked = parts.readonly_pool(model, features, images)
        readonly = parts.readonly_head(
            model, features, images, ranked, sampler.needs_pred_boxes, rank_dtype, rank_dropout
        )
    seconds = time.perf_counter() - start if readonly is not None else 0.0
    selections = parts.select(sampler, images, readonly, per_image, gen)
    return Chosen([s.indices for s in selections], selections, readonly, ranked, seconds)


def iou_histogram(max_iou: Tensor) -> list[int]:
    """Counts of ``max_iou`` in the bins [0, .1), [.1, .2), ..., [.9, 1.0] (1.0 in the last)."""
    edges = torch.linspace(0.1, 0.9, IOU_BINS - 1, dtype=max_iou.dtype, device=max_iou.device)
    # Each edge rounded to max_iou's dtype, so 0.1 stored as float32 falls in [.1, .2).
    bins = torch.bucketize(max_iou, edges, right=True)
    return torch.bincount(bins, minlength=IOU_BINS).tolist()


def _non_finite(
    losses: RoILosses | LossTerms, count: int, rpn: dict[str, Tensor] | None = None
) -> tuple[str, float] | None:
    """The first term (cls, box, then the RPN's) whose sum is not finite, with its value; None
    if none."""
    terms = [("cls", losses.cls), ("box", losses.box)]
    terms += [(RPN_TERM_NAMES.get(k, k), v) for k, v in (rpn or {}).items()]
    for term, values in terms:
        value = values.sum().item() / count
        if not math.isfinite(value):
            return term, value
    return None


def check_finite(
    losses: RoILosses | LossTerms,
    count: int,
    iteration: int,
    dist: DistInfo | None = None,
    rpn: dict[str, Tensor] | None = None,
) -> None:
    """Raise :class:`NonFiniteLoss` naming the term (cls, box, then the RPN's ``rpn`` terms)
    whose sum is not finite.

    Under torchrun (``dist``) the ranks agree first, with one small all-reduce of a flag, so
    that every rank stops before the update with the same line (naming the rank), instead of
    the others waiting in the gradient all-reduce for the one that raised.
    """
    bad = _non_finite(losses, count, rpn)
    if (
        dist is not None
        and dist.world_size > 1
        and any_rank(bad is not None, dist, losses.cls.device)
    ):
        reports = gather_objects(bad, dist)  # rare: only once some rank's loss is not finite
        rank, (term, value) = next((r, b) for r, b in enumerate(reports) if b is not None)
        raise NonFiniteLoss(iteration, term, value, where=f" of rank {rank}")
    if bad is not None:
        raise NonFiniteLoss(iteration, *bad)


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


def _training_pool(
    model: FastRCNN, features: Tensor, images: list[ImageRoIs], chosen: Chosen, rois: Tensor
) -> Tensor:
    """The chosen RoIs ``rois`` pooled with autograd: their rows of the read-only pass's pooling
    when there was one (``FastRCNN.pool_chosen``), else pooled here."""
    if chosen.pooled is None:
        return model.pool(features, rois)
    starts = accumulate([len(r.labels) for r in images[:-1]], initial=0)
    index = torch.cat([c + start for c, start in zip(chosen.indices, starts, strict=True)])
    return model.pool_chosen(features, chosen.pooled, index.to(rois.device))


def training_pool(
    model: FastRCNN, features: Tensor, images: list[ImageRoIs], chosen: Chosen
) -> tuple[Tensor, Tensor, Tensor]:
    """The chosen RoIs' labels, their boxes with the batch index, and their pooling with
    autograd (the training forward's first half)."""
    pairs = list(zip(images, chosen.indices, strict=True))
    labels = torch.cat([r.labels[c] for r, c in pairs])
    rois = rois_with_batch_index([r.boxes[c] for r, c in pairs])
    return labels, rois, _training_pool(model, features, images, chosen, rois)


def training_loss(
    model: FastRCNN,
    sampler: RoISampler,
    images: list[ImageRoIs],
    chosen: Chosen,
    labels: Tensor,
    rois: Tensor,
    pooled: Tensor,
) -> LossTerms:
    """The RoI head over the chosen RoIs' pooling and the loss their selections name, with the
    sampler's ``loss_options`` (``samplers.loss.batch_loss``)."""
    targets = torch.cat([r.box_targets[c] for r, c in zip(images, chosen.indices, strict=True)])
    losses = model.head_losses(pooled, rois, labels, targets)
    return batch_loss(
        model.decode_class, images, chosen.selections, losses, labels, sampler.loss_options
    )


@dataclass(frozen=True)
class StepParts:
    """The parts of a step, in the order they run. :func:`train_step` calls them in turn;
    ``engine.bench`` hands it wrapped ones that time each (``ohem bench``'s parts table)."""

    trunk: Callable[[FastRCNN, Tensor], Tensor] = FastRCNN.features
    candidates: Callable[..., tuple[list[ImageRoIs], dict[str, Tensor]]] = candidate_rois
    readonly_pool: Callable[..., PooledRoIs] = readonly_pool
    readonly_head: Callable[..., list[RoILosses]] = readonly_head
    select: Callable[..., list[Selection]] = select_rois
    pool: Callable[..., tuple[Tensor, Tensor, Tensor]] = training_pool
    head: Callable[..., LossTerms] = training_loss
    backward: Callable[[Tensor, nn.Module, Updater], None] = apply_loss


DEFAULT_PARTS = StepParts()


def train_step(
    model: FastRCNN,
    sampler: RoISampler,
    batch: Batch,
    updater: Updater,
    per_image: int,
    gen: torch.Generator,
    iteration: int,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
    rank_dtype: str = "float32",
    rank_dropout: bool = True,
    measure_health: bool = False,
    parts: StepParts = DEFAULT_PARTS,
    source: CandidateSource | None = None,
) -> StepResult:
    """Run iteration ``iteration`` (1-based, for messages) on ``batch`` and update the weights.

    ``rank_dtype`` is the read-only pass's precision (:func:`rank_autocast`) and
    ``rank_dropout`` whether it keeps dropout on; ``measure_health`` fills
    ``StepResult.p_true_fg`` and ``p_top_bg`` (``engine.health``; the trainer asks on logging
    steps); ``parts`` are the step's parts (``engine.bench`` passes timed ones); ``source``
    says how faster-rcnn scores its RPN's proposals (``engine.candidates``). Raises
    :class:`NonFiniteLoss` before any update when the loss is NaN or infinite.
    """
    with autocast() if autocast is not None else nullcontext():
        features = parts.trunk(model, batch.images)
        images, rpn_losses = parts.candidates(model, features, batch, source)
        chosen = choose_rois(
            model, sampler, features, images, per_image, gen, rank_dtype, rank_dropout, parts
        )
        labels, rois, pooled = parts.pool(model, features, images, chosen)
        terms = parts.head(model, sampler, images, chosen, labels, rois, pooled)
        loss = terms.cls + terms.box
        for term in rpn_losses.values():  # faster-rcnn: one backward for the RPN and the head
            loss = loss + term
        measured = (
            classifier_health(model, features, images, chosen.readonly)
            if measure_health
            else (None, None)
        )
    count = max(1, len(labels))
    check_finite(terms, 1, iteration, updater.dist, rpn_losses)
    parts.backward(loss, model, updater)
    pairs = list(zip(images, chosen.indices, strict=True))
    result = StepResult(
        loss=loss.item(),
        loss_cls=terms.cls.item(),
        loss_box=terms.box.item(),
        fg_fraction=(labels > 0).sum().item() / count,
        num_chosen=len(labels),
        num_fg=int((labels > 0).sum().item()),
        readonly_time=chosen.readonly_time,
        iou_hist=iou_histogram(torch.cat([r.max_iou[c] for r, c in pairs])),
    )
    result.p_true_fg, result.p_top_bg = measured
    if rpn_losses:
        result.loss_rpn_cls = rpn_losses["loss_objectness"].item()
        result.loss_rpn_box = rpn_losses["loss_rpn_box_reg"].item()
        boxes = sum(len(r.labels) for r in images)
        result.candidates_per_image = boxes / len(images)
    if chosen.readonly is not None:
        picked = zip(chosen.readonly, chosen.indices, strict=True)
        result.mean_loss_chosen = torch.cat([r.total[c] for r, c in picked]).mean().item()
        result.mean_loss_all = torch.cat([r.total for r in chosen.readonly]).mean().item()
    return result
