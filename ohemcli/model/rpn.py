"""Faster R-CNN's region proposal network (Ren et al. 2015), built from torchvision's parts.

``AnchorGenerator``, ``RPNHead`` and ``RegionProposalNetwork`` do the anchors, the objectness
and box layers, the anchor sampling, the RPN loss and the proposal NMS; this module only wires
them to one feature map and the config's settings (``model.rpn_*``, each with py-faster-rcnn's
value beside it in ``config.schema``). What differs from py-faster-rcnn, by torchvision's choice:
anchors are centred on ``x * stride`` rather than ``x * stride + 7.5``, and anchors that cross the
image border are scored rather than ignored (``RPN_ALLOWED_BORDER`` 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from ohemcli.config import ModelConfig, anchor_sizes

RPN_LOSS_TERMS = ("loss_objectness", "loss_rpn_box_reg")  # torchvision's names


class ProposalNetwork(nn.Module):
    """An RPN over a single feature map of stride ``stride`` and ``channels`` channels."""

    def __init__(self, cfg: ModelConfig, scale: int, channels: int, stride: int) -> None:
        """``scale``: the data's shorter image side, which fits the anchors when
        ``model.rpn_anchor_sizes`` is None (:func:`ohemcli.config.anchor_sizes`)."""
        super().__init__()
        self.stride = stride
        generator = AnchorGenerator(
            sizes=(anchor_sizes(cfg, scale),), aspect_ratios=(tuple(cfg.rpn_aspect_ratios),)
        )
        head = RPNHead(channels, generator.num_anchors_per_location()[0])
        self.rpn = RegionProposalNetwork(
            generator,
            head,
            fg_iou_thresh=cfg.rpn_fg_iou,
            bg_iou_thresh=cfg.rpn_bg_iou,
            batch_size_per_image=cfg.rpn_batch_anchors,
            positive_fraction=cfg.rpn_fg_fraction,
            pre_nms_top_n={"training": cfg.rpn_pre_nms_train, "testing": cfg.rpn_pre_nms_test},
            post_nms_top_n={"training": cfg.rpn_post_nms_train, "testing": cfg.rpn_post_nms_test},
            nms_thresh=cfg.rpn_nms,
        )

    def forward(
        self,
        features: Tensor,
        image_sizes: list[tuple[int, int]],
        gt_boxes: list[Tensor] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals per image (best first, detached, clipped to ``image_sizes`` (h, w)) and, in
        training, the RPN's two losses against ``gt_boxes`` (each image's (G, 4) boxes).

        The RPN runs in float32 whatever the caller's autocast: torchvision builds its anchors
        in the features' dtype and decodes boxes in the deltas' dtype, and in bfloat16 a
        coordinate near 600 rounds to a multiple of 4 px.
        """
        height, width = features.shape[-2:]
        # The anchor generator reads the stride as (padded image side) // (feature side), which
        # a trunk that rounds its sides up (or down) would make 15 or 17: it is shown an image of
        # exactly stride x map instead.
        shown = features.new_zeros(()).expand(len(image_sizes), 1, height * self.stride,
                                              width * self.stride)  # fmt: skip
        targets = None if gt_boxes is None else [{"boxes": b.float()} for b in gt_boxes]
        with torch.autocast(features.device.type, enabled=False):
            boxes, losses = self.rpn(
                ImageList(shown, image_sizes), {"0": features.float()}, targets
            )
        return boxes, losses

    def counts(self, phase: str) -> tuple[int, int]:
        """The config's (pre-NMS, post-NMS) proposal counts of ``phase``: "training" or
        "testing"."""
        return self.rpn._pre_nms_top_n[phase], self.rpn._post_nms_top_n[phase]

    @contextmanager
    def test_counts(self, pre_nms: int, post_nms: int) -> Iterator[None]:
        """Eval-mode proposals at ``pre_nms`` -> ``post_nms`` for the block (the recall at 1,000
        proposals, hnm's mining pass at the training counts); the config's counts after."""
        pre, post = self.rpn._pre_nms_top_n, self.rpn._post_nms_top_n
        self.rpn._pre_nms_top_n = {**pre, "testing": pre_nms}
        self.rpn._post_nms_top_n = {**post, "testing": post_nms}
        try:
            yield
        finally:
            self.rpn._pre_nms_top_n, self.rpn._post_nms_top_n = pre, post
