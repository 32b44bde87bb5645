"""The training loss of a batch's chosen RoIs: the loss their selections name (cross-entropy,
focal, pisa's), with the selections' per-RoI weights and, for pisa, ISR-P's positive weights and
CARL's term (see ohemcli.model.losses)."""

from __future__ import annotations

import torch
from torch import Tensor

from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.model.losses import LossTerms, RoILosses, carl_term, isr_p_weights, reduce_losses
from ohemcli.samplers.base import ImageRoIs, ProtocolError, Selection


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


def pisa_pos_weights(
    model: FastRCNN,
    images: list[ImageRoIs],
    selections: list[Selection],
    losses: RoILosses,
    labels: Tensor,
) -> Tensor:
    """The chosen RoIs' cls weights with PISA's ISR-P on the foreground (see
    :func:`ohemcli.model.losses.isr_p_weights`): IoU of the (detached) predicted box with the
    target box, both decoded from the RoI; each image's ground truths numbered apart."""
    weights = _weights(selections, "cls_weight")
    weights = labels.new_ones(len(labels), dtype=torch.float32) if weights is None else weights
    fg = labels > 0
    if not bool(fg.any()) or losses.deltas is None:
        return weights
    pairs = [(r, sel.indices) for r, sel in zip(images, selections, strict=True)]
    boxes = torch.cat([r.boxes[c] for r, c in pairs])[fg]
    targets = torch.cat([r.box_targets[c] for r, c in pairs])[fg]
    gts, offset = [], 0
    for r, c in pairs:  # one number per (image, ground truth)
        gt = r.gt_index[c] if r.gt_index is not None else torch.zeros_like(c)
        gts.append(gt + offset)
        offset += int(gt.max().item()) + 1 if gt.numel() else 0
    from torchvision.ops import box_iou  # training only

    with torch.no_grad():
        pred = model.decode_class(boxes, losses.deltas[fg].detach(), labels[fg])
        target = model.decode_class(boxes, targets, labels[fg])
        iou = box_iou(pred, target).diagonal()
        weights = weights.clone()
        # ISR-P keeps each positive's original weight as the normaliser's reference (1 here).
        weights[fg] = isr_p_weights(iou, labels[fg], torch.cat(gts)[fg], losses.cls[fg].detach())
    return weights


def batch_loss(
    model: FastRCNN,
    images: list[ImageRoIs],
    selections: list[Selection],
    losses: RoILosses,
    labels: Tensor,
    options: dict[str, float | str] | None = None,
) -> LossTerms:
    """The training loss that the selections (one per image) name, with their weights (see
    :func:`ohemcli.model.losses.reduce_losses`); ``options`` are the sampler's loss numbers
    (``focal_gamma``, ``focal_alpha``, ``focal_norm``; pisa's ``isr_p``, ``carl_k``,
    ``carl_bias``)."""
    options = options or {}
    kind = loss_kind(selections)
    cls_w, box_w = _weights(selections, "cls_weight"), _weights(selections, "box_weight")
    if kind == "pisa" and options.get("isr_p", 1.0):
        cls_w = pisa_pos_weights(model, images, selections, losses, labels)
    terms = reduce_losses(
        kind,
        losses,
        labels,
        cls_w,
        box_w,
        float(options.get("focal_gamma", 2.0)),
        float(options.get("focal_alpha", 0.25)),
        str(options.get("focal_norm", "rois")),
    )
    if kind == "pisa" and options.get("carl", 1.0):
        carl = carl_term(
            losses, labels, float(options.get("carl_k", 1.0)), float(options.get("carl_bias", 0.2))
        )
        terms = LossTerms(terms.cls, terms.box + carl)
    return terms
