"""The classifier's health on a batch (``runs.stability`` reads it): can it tell foreground from
background, or does it sit at the class prior?

Every candidate RoI counts, not only the chosen: a hard-mining sampler chooses the RoIs its
classifier gets wrong, and on those the two means meet while it learns (ohem on BCCD: 0.45 and
0.44; experiments/README.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs


def classifier_health(
    model: FastRCNN,
    features: Tensor,
    images: list[ImageRoIs],
    readonly: list[RoILosses] | None = None,
) -> tuple[float | None, float | None]:
    """(``p_true_fg``, ``p_top_bg``) of ``engine.step.StepResult`` over every candidate RoI:
    from the read-only pass's logits (``readonly``) when there was one, else from a pass of the
    head without dropout and without autograd (it draws no random numbers, so training stays
    bit for bit the same)."""
    labels = torch.cat([r.labels for r in images])
    with torch.no_grad():
        given = [r.logits for r in readonly or [] if r.logits is not None]
        if readonly is not None and len(given) == len(readonly):
            logits = torch.cat(given)
        else:
            rois = rois_with_batch_index([r.boxes for r in images])
            with model.head_dropout(False):
                logits, _ = model.head_forward(model.pool(features, rois))
        probs = model.class_probs(logits.detach())
        fg = labels > 0
        true_fg = probs[fg, labels[fg]].mean().item() if bool(fg.any()) else None
        bg = probs[~fg, 1:]
        top_bg = bg.max(dim=1).values.mean().item() if bg.numel() else None
    return true_fg, top_bg
