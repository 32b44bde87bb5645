"""Online Hard Example Mining (Shrivastava, Gupta, Girshick, CVPR 2016).

Every RoI of the image (background is IoU in [0, 0.5): no bg_lo, no fg/bg ratio) is scored by its
loss from the trainer's read-only pass; NMS over RoIs scored by loss removes near-duplicates, so
that one hard region does not fill the batch; the top B/N that remain are trained on.

The authors' release (abhi2610/ohem, ``get_ohem_minibatch`` in lib/roi_data_layer/minibatch.py)
runs that NMS separately for each image and each RoI label, so that a high-loss background RoI
never suppresses an overlapping foreground one; ``nms_scope="label"`` does the same,
``"image"`` runs one class-agnostic NMS per image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ohemcli.errors import UserError
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, Stateless

RANKING_LOSSES = ("cls+box", "cls")
NMS_SCOPES = ("label", "image")


def hardest_rois(
    boxes: Tensor,
    losses: Tensor,
    num: int,
    nms_iou: float | None,
    labels: Tensor | None = None,
) -> Tensor:
    """Positions of the ``num`` highest-loss RoIs, after NMS at ``nms_iou`` (None: no NMS).

    With ``labels``, NMS runs separately within each label (a RoI only suppresses RoIs of its own
    label); without, one NMS runs over all RoIs. Ties in loss keep the lower position first
    without NMS (stable sort), so the choice is deterministic.
    """
    losses = losses.float()
    if nms_iou is None:
        order = torch.sort(losses, descending=True, stable=True).indices
        return order[:num]
    # Imported here: the sampler names reach every command line, torchvision only training.
    from torchvision.ops import batched_nms, nms

    # torchvision's nms and batched_nms return kept positions sorted by decreasing score.
    if labels is None:
        return nms(boxes.float(), losses, nms_iou)[:num]
    return batched_nms(boxes.float(), losses, labels, nms_iou)[:num]


def _check_choice(argument: str, value: str, choices: tuple[str, ...]) -> None:
    """A Python caller's bad argument; a config's value is refused earlier, by config_rules."""
    if value not in choices:
        choose = " or ".join(choices)
        raise UserError(f"OHEMSampler {argument}: unknown '{value}' (choose {choose})")


class OHEMSampler(Stateless):
    """The top B/N RoIs by loss, after loss-scored NMS."""

    needs_roi_losses = True
    needs_mining = False

    def __init__(
        self,
        nms_iou: float | None = 0.7,
        nms_scope: str = "label",
        ranking_loss: str = "cls+box",
    ) -> None:
        """``nms_iou``: IoU of the loss-scored NMS (None: no NMS); ``nms_scope``: "label" (per
        image and RoI label, the release) or "image"; ``ranking_loss``: "cls+box" or "cls"."""
        _check_choice("ranking_loss", ranking_loss, RANKING_LOSSES)
        _check_choice("nms_scope", nms_scope, NMS_SCOPES)
        self.nms_iou, self.nms_scope, self.ranking_loss = nms_iou, nms_scope, ranking_loss

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """Positions of the hardest RoIs of the image."""
        if roi_losses is None:
            raise ValueError("ohem needs the per-RoI losses of the read-only pass")
        score = roi_losses.cls if self.ranking_loss == "cls" else roi_losses.total
        labels = rois.labels if self.nms_scope == "label" else None
        return hardest_rois(rois.boxes, score, num, self.nms_iou, labels)
