"""One SGD iteration: features once, the optional read-only pass, sampling, forward and backward."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from rich.progress import TextColumn
from torch import Tensor

from ohemcli.data.batching import Batch
from ohemcli.engine.distributed import average_gradients
from ohemcli.errors import UserError
from ohemcli.model.fast_rcnn import RoILosses, rois_with_batch_index
from ohemcli.samplers.base import ImageRoIs

if TYPE_CHECKING:
    from ohemcli.engine.run_state import TrainState
    from ohemcli.engine.train import Trainer


@dataclass
class StepResult:
    """What one iteration reports (plain floats)."""

    loss: float
    loss_cls: float
    loss_box: float
    fg_fraction: float  # share of foreground among the chosen RoIs
    num_chosen: int
    readonly_time: float = 0.0  # seconds of the read-only pass (ohem)
    mean_loss_chosen: float | None = None  # ohem: mean read-only loss of the chosen RoIs
    mean_loss_all: float | None = None  # ohem: mean read-only loss of every RoI

    @staticmethod
    def progress_columns() -> tuple[TextColumn, ...]:
        """Extra progress-bar columns: loss, lr and s/iter."""
        return (
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} s/it"),
        )

    def progress_fields(self, lr: float, state: TrainState) -> dict[str, Any]:
        """Values for :meth:`progress_columns`."""
        return {
            "loss": f"{state.smoothed_loss:.3f}",
            "lr": f"{lr:.2g}",
            "speed": f"{state.recent_s_per_iter:.3f}",
        }


def _image_rois(batch: Batch) -> list[ImageRoIs]:
    return [
        ImageRoIs(s.rois, s.labels, s.max_iou, s.box_targets, s.image_id) for s in batch.samples
    ]


def _readonly_losses(
    trainer: Trainer, features: Tensor, images: list[ImageRoIs]
) -> list[RoILosses]:
    """Every RoI's loss with no autograd graph, split per image."""
    with torch.no_grad():
        losses = trainer.model.roi_losses(
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


def train_step(trainer: Trainer, batch: Batch) -> StepResult:
    """Run one iteration of ``trainer`` on ``batch`` and update the weights."""
    model, cfg = trainer.model, trainer.cfg
    per_image = cfg.sampler.batch_rois // cfg.train.images_per_batch
    images = _image_rois(batch)
    with trainer.autocast():
        features = model.features(batch.images)
        readonly, readonly_time = None, 0.0
        if trainer.sampler.needs_roi_losses:
            start = time.perf_counter()
            readonly = _readonly_losses(trainer, features, images)
            readonly_time = time.perf_counter() - start
        chosen = [
            trainer.sampler.select(
                r, None if readonly is None else readonly[i], per_image, trainer.gen
            )
            for i, r in enumerate(images)
        ]
        labels = torch.cat([r.labels[c] for r, c in zip(images, chosen, strict=True)])
        losses = model.roi_losses(
            features,
            rois_with_batch_index([r.boxes[c] for r, c in zip(images, chosen, strict=True)]),
            labels,
            torch.cat([r.box_targets[c] for r, c in zip(images, chosen, strict=True)]),
        )
        # sum / count rather than mean: a batch where the sampler finds nothing gives 0, not NaN.
        count = max(1, len(labels))
        loss = losses.total.sum() / count
    if not math.isfinite(loss.item()):
        raise UserError(
            f"--lr: the loss became {loss.item()} at iteration "
            f"{trainer.state.iteration + 1}; try a lower --lr"
        )
    trainer.optimizer.zero_grad(set_to_none=True)
    if trainer.scaler is not None:
        trainer.scaler.scale(loss).backward()
        average_gradients(model, trainer.dist)
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        loss.backward()
        average_gradients(model, trainer.dist)
        trainer.optimizer.step()
    trainer.scheduler.step()
    result = StepResult(
        loss=loss.item(),
        loss_cls=losses.cls.sum().item() / count,
        loss_box=losses.box.sum().item() / count,
        fg_fraction=(labels > 0).sum().item() / count,
        num_chosen=len(labels),
        readonly_time=readonly_time,
    )
    if readonly is not None:
        result.mean_loss_chosen = (
            torch.cat([r.total[c] for r, c in zip(readonly, chosen, strict=True)]).mean().item()
        )
        result.mean_loss_all = torch.cat([r.total for r in readonly]).mean().item()
    return result
