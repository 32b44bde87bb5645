"""Samplers that keep every RoI and change the loss instead: ``sampling-free`` and ``focal``.

- ``sampling-free`` (Chen et al. 2019, ChenJoya/sampling-free ``box_head/loss.py``): every RoI
  (foreground IoU >= 0.5, background below it) trains; cross-entropy is averaged over all of them,
  smooth L1 over the foreground, and the guided scaling ``L_cls <- 2 L_cls (L_reg / L_cls)``
  (ratio detached) sets the classification term's size (loss ``guided``).
- ``focal``: mmdetection's ``FocalLoss`` as published: sigmoid over the foreground classes,
  alpha 0.25, gamma 2, over every RoI, divided by the number of RoIs as mmdetection's R-CNN head
  divides its classification loss (loss ``focal``). Its classifier starts at RetinaNet's prior
  (0.01 per class) and scores with a sigmoid at test time (``model.classifier: sigmoid``, set by
  ``samplers.regime``). ``sampler.focal_form: softmax`` is the softmax variant
  (loss ``softmax-focal``); ``sampler.focal_norm: fg`` RetinaNet's foreground normaliser.

Both ignore ``num`` (B/N): the batch is every candidate RoI of the image.
"""

from __future__ import annotations

import torch

from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, Selection, Stateless


class EveryRoISampler(Stateless):
    """Every RoI of the image, trained with the loss ``loss`` (``guided`` or ``focal``)."""

    needs_roi_losses = False
    needs_mining = False

    def __init__(
        self,
        loss: str,
        focal_gamma: float = 2.0,
        focal_alpha: float = 0.25,
        focal_norm: str = "rois",
    ) -> None:
        """``loss``: the training loss; ``focal_gamma``, ``focal_alpha``, ``focal_norm``: the
        focal losses' numbers (see :func:`ohemcli.model.losses.reduce_losses`)."""
        self.loss = loss
        self.loss_options = {
            "focal_gamma": focal_gamma,
            "focal_alpha": focal_alpha,
            "focal_norm": focal_norm,
        }

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Selection:
        """Every RoI, with the sampler's loss."""
        return Selection(torch.arange(len(rois.labels), device=rois.labels.device), loss=self.loss)
