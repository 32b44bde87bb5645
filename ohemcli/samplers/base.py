"""The RoI sampler protocol: a sampler sees tensors and says which RoIs to train on.

Samplers never hold the model. The trainer runs the read-only loss pass when a sampler sets
``needs_roi_losses`` and the hnm mining pass (``engine.mining``), and hands the results over.
``select`` returns either a tensor of positions (the plain case) or a :class:`Selection`, which
also says, as data, how each chosen RoI counts (per-RoI weights) and which training loss the
trainer reduces them with (``model.losses.LOSS_KINDS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import torch
from torch import Tensor

from ohemcli.model.losses import LOSS_KINDS, RoILosses


@dataclass
class ImageRoIs:
    """Every candidate RoI of one training image, with its targets."""

    boxes: Tensor  # (R, 4) in network-input coordinates
    labels: Tensor  # (R,) int64, 0 = background
    max_iou: Tensor  # (R,) max IoU with the training ground truth
    box_targets: Tensor  # (R, 4) normalised deltas
    image_id: str
    gt_index: Tensor | None = None  # (R,) the ground-truth box of highest IoU (-1: none)


@dataclass
class Selection:
    """What a sampler chose for one image, as data.

    ``indices`` are positions into the image's RoIs. ``cls_weight`` and ``box_weight`` (None: 1
    for every RoI) multiply the chosen RoIs' loss terms, in the order of ``indices``. ``loss`` is
    the training loss (``ce``, ``focal``, ``guided`` or ``pisa``, see
    :func:`ohemcli.model.losses.reduce_losses`); every image of a batch must name the same one.
    """

    indices: Tensor
    cls_weight: Tensor | None = None
    box_weight: Tensor | None = None
    loss: str = "ce"


class ProtocolError(ValueError):
    """A sampler's answer does not follow the protocol (the message says how)."""


def as_selection(answer: object, num_rois: int, device: torch.device | None = None) -> Selection:
    """``select``'s answer as a checked :class:`Selection` (a tensor is one with no weights),
    with its tensors on ``device`` (the RoIs' device; None: where the sampler left them).

    This is the one place where a sampler's output meets the RoIs' device: a plugin that builds
    its weights on the CPU would otherwise multiply a CUDA loss by a CPU tensor in the step.
    Raises :class:`ProtocolError` when the positions are not a 1-D integer tensor within
    ``[0, num_rois)``, a weight does not match them in length, or the loss is unknown.
    """
    # answer: any object from a plugin; its indices are checked right below
    selection = answer if isinstance(answer, Selection) else Selection(answer)  # type: ignore[arg-type]
    idx = selection.indices
    if not isinstance(idx, Tensor) or idx.dim() != 1 or idx.is_floating_point():
        raise ProtocolError("select() must return a 1-D integer tensor of positions or a Selection")
    if idx.dtype in (torch.bool, torch.uint8):
        # Both index as a mask, not as positions: a bool mask would train on the wrong RoIs'
        # count and order, a uint8 answer raises a bare IndexError deep in the step.
        raise ProtocolError(
            f"select() returned a {str(idx.dtype).removeprefix('torch.')} tensor; return positions "
            "as int64 (a mask m gives them as m.nonzero().flatten())"
        )
    # Checked where the values are, before the move (a tensor on ``meta`` has none to check).
    if idx.numel() and not idx.is_meta and (int(idx.min()) < 0 or int(idx.max()) >= num_rois):
        raise ProtocolError(f"select() returned a position outside [0, {num_rois})")
    for name in ("cls_weight", "box_weight"):
        weight = getattr(selection, name)
        if weight is not None and (not isinstance(weight, Tensor) or weight.shape != idx.shape):
            raise ProtocolError(f"select(): {name} must be a tensor of shape {tuple(idx.shape)}")
    if selection.loss not in LOSS_KINDS:
        raise ProtocolError(
            f"select(): unknown loss {selection.loss!r} (choose from {', '.join(LOSS_KINDS)})"
        )
    return selection if device is None else _on_device(selection, device)


def _on_device(selection: Selection, device: torch.device) -> Selection:
    """``selection`` with its tensors on ``device`` (the same object when they already are)."""

    def move(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(device, non_blocking=True)

    return Selection(
        move(selection.indices),  # type: ignore[arg-type]
        move(selection.cls_weight),
        move(selection.box_weight),
        selection.loss,
    )


@dataclass
class MinedNegatives:
    """A mining pass's result, or hnm's pool: per image, RoI positions (in its RoI list) and
    object scores, highest first.

    A mining pass also fills ``rescored``: per image, the latest object scores of the RoI positions
    that its :class:`MiningRequest` named (hnm's pool), whatever those scores are.
    """

    per_image: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    rescored: dict[str, Tensor] = field(default_factory=dict)
    # faster-rcnn, whose RoIs change from pass to pass: per image, the boxes (original image
    # coordinates) of the pass's own RoI list, into which ``per_image``'s positions point. That
    # list ends with the M boxes of ``MiningRequest.rescore_boxes`` (as a training step's ends
    # with the pooled boxes), so rescored box j is position len - M + j.
    boxes: dict[str, Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of RoIs over all images (of ``per_image``)."""
        return sum(len(idx) for idx, _ in self.per_image.values())


@dataclass(frozen=True)
class MiningRequest:
    """What a mining pass looks for: background RoIs that score as objects."""

    fp_thresh: float  # a background RoI is a false positive at this highest foreground probability
    per_image: int  # most false positives returned per image, highest scores first
    rescore: dict[str, Tensor] = field(default_factory=dict)  # per image, positions to score again
    # faster-rcnn: per image, boxes (original coordinates) to score again, after the RPN's
    rescore_boxes: dict[str, Tensor] = field(default_factory=dict)
    fg_thresh: float = 0.5  # faster-rcnn: a proposal this close to an object is no negative


class RoISampler(Protocol):
    """What the trainer needs from a sampler."""

    needs_roi_losses: bool  # the trainer runs the read-only pass and passes roi_losses when True
    needs_mining: bool  # the trainer runs mining passes and calls after_mining with their result
    needs_pred_boxes: bool  # the read-only pass also decodes each RoI's top-class box (pisa)
    # The numbers of the training loss its selections name (samplers.loss.batch_loss):
    # focal_gamma, focal_alpha, focal_norm; pisa's isr_p, carl, carl_k, carl_bias.
    loss_options: Mapping[str, float | str]

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor | Selection:
        """Positions (into ``rois``) of the RoIs to train on (at most ``num`` by convention;
        sampling-free and focal take every RoI), or a :class:`Selection` with weights and loss."""
        ...

    def after_mining(self, mined: MinedNegatives | None) -> None:
        """Take the result of a mining pass (hnm); other samplers ignore it."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values to save in the checkpoint."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        ...


class SamplerBase:
    """The defaults of :class:`RoISampler`'s flags: no read-only pass, no mining, no decoded
    boxes, and the loss's default numbers. Built-in samplers start from here."""

    needs_roi_losses: bool = False
    needs_mining: bool = False
    needs_pred_boxes: bool = False
    loss_options: Mapping[str, float | str] = MappingProxyType({})  # read-only: shared default


class Stateless(SamplerBase):
    """The state half of :class:`RoISampler` for a sampler that keeps none: nothing to refresh
    after a mining pass, nothing to save or restore."""

    def after_mining(self, mined: MinedNegatives | None) -> None:
        """Nothing to refresh."""

    def state_dict(self) -> dict[str, Any]:
        """No state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state."""


class MiningSampler(RoISampler, Protocol):
    """A sampler with ``needs_mining``: it says what to mine and how big its pool is."""

    def mining_request(self) -> MiningRequest:
        """What the next mining pass should return (see :class:`MiningRequest`)."""
        ...

    @property
    def pool_size(self) -> int:
        """RoIs in the pool now (logged as ``hnm_pool_size``)."""
        ...


def random_subset(candidates: Tensor, num: int, gen: torch.Generator) -> Tensor:
    """At most ``num`` of ``candidates`` (1-D positions), uniformly, deterministic for ``gen``."""
    if num <= 0 or candidates.numel() == 0:
        return candidates[:0]
    order = torch.randperm(candidates.numel(), generator=gen)[:num]
    return candidates[order.to(candidates.device)]
