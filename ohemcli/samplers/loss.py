"""The training loss of a batch's chosen RoIs: the loss their selections name (cross-entropy,
focal, guided, pisa's), with the selections' per-RoI weights and the sampler's
``loss_options`` (see ohemcli.model.losses; pisa's own part lives in samplers.pisa)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ohemcli.model.losses import LossTerms, RoILosses, reduce_losses
from ohemcli.samplers.base import ImageRoIs, ProtocolError, Selection
from ohemcli.samplers.pisa import BoxDecoder, pisa_loss


def _weights(selections: list[Selection], name: str) -> Tensor | None:
    """One weight per chosen RoI over the batch (1 where an image gave none); None when no image
    gave any."""
    given = [getattr(sel, name) for sel in selections]
    if all(w is None for w in given):
        return None
    return torch.cat(
        [
            sel.indices.new_ones(len(sel.indices), dtype=torch.float32) if w is None else w.float()
            for sel, w in zip(selections, given, strict=True)
        ]
    )


def loss_kind(selections: list[Selection]) -> str:
    """The one training loss that every image's selection names."""
    kinds = {sel.loss for sel in selections} or {"ce"}
    if len(kinds) > 1:
        raise ProtocolError(f"select() named several losses in one batch: {', '.join(kinds)}")
    return kinds.pop()


def batch_loss(
    decode: BoxDecoder,
    images: list[ImageRoIs],
    selections: list[Selection],
    losses: RoILosses,
    labels: Tensor,
    options: Mapping[str, float | str],
) -> LossTerms:
    """The training loss that the selections (one per image) name, with their weights (see
    :func:`ohemcli.model.losses.reduce_losses`); ``options`` are the sampler's
    ``loss_options`` (``focal_gamma``, ``focal_alpha``, ``focal_norm``; pisa's ``isr_p``,
    ``carl``, ``carl_k``, ``carl_bias``); ``decode`` is ``FastRCNN.decode_class`` (pisa's
    ISR-P compares decoded boxes)."""
    kind = loss_kind(selections)
    cls_w, box_w = _weights(selections, "cls_weight"), _weights(selections, "box_weight")
    if kind == "pisa":
        return pisa_loss(decode, images, selections, losses, labels, cls_w, box_w, options)
    return reduce_losses(
        kind,
        losses,
        labels,
        cls_w,
        box_w,
        float(options.get("focal_gamma", 2.0)),
        float(options.get("focal_alpha", 0.25)),
        str(options.get("focal_norm", "rois")),
    )
