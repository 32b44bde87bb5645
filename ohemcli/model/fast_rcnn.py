"""Fast R-CNN (Girshick 2015): shared conv features, RoI pooling, a class and a box layer.

Its per-RoI loss (``model.losses.per_roi_loss``) both ranks RoIs (ohem's read-only pass) and trains.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, roi_align, roi_pool

from ohemcli.boxes import BoxNorm, decode
from ohemcli.config import (
    FAST_RCNN_MAX_PER_IMAGE,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    input_norm,
)
from ohemcli.errors import UserError
from ohemcli.model.backbones import BACKBONES
from ohemcli.model.losses import RoILosses, per_roi_loss
from ohemcli.model.roi_pooling import PooledRoIs, chosen_rows, pool_with_argmax
from ohemcli.model.rpn import ProposalNetwork


def rois_with_batch_index(rois: list[Tensor]) -> Tensor:
    """Per-image (R_i, 4) boxes -> one (sum R_i, 5) tensor with the image index first."""
    return torch.cat(
        [
            torch.cat([torch.full((len(r), 1), float(i), device=r.device), r], dim=1)
            for i, r in enumerate(rois)
        ]
    )


class FastRCNN(nn.Module):
    """Fast R-CNN over a registered backbone with K object classes (+1 background)."""

    def __init__(
        self, cfg: ModelConfig, num_classes: int, prior: float = 0.01, scale: int = 600
    ) -> None:
        """``prior``: under ``cfg.classifier == "sigmoid"``, every foreground class's initial
        probability (RetinaNet's bias init, so that the sum over many background RoIs does not
        swamp the first iterations). ``scale``: the data's shorter side, which fits the RPN's
        anchors under ``cfg.detector == "faster-rcnn"``."""
        super().__init__()
        if cfg.backbone not in BACKBONES:
            raise UserError(
                f"--backbone: unknown '{cfg.backbone}' (choose from {', '.join(BACKBONES)})"
            )
        if cfg.roi_op not in ("pool", "align"):
            raise UserError(f"--roi-op: unknown '{cfg.roi_op}' (choose pool or align)")
        backbone = BACKBONES[cfg.backbone](cfg)
        self.trunk, self.head = backbone.trunk, backbone.head
        self.stride, self.roi_size, self.roi_op = backbone.stride, cfg.roi_size, cfg.roi_op
        self.num_classes = num_classes
        self.cls_score = nn.Linear(backbone.out_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(backbone.out_dim, 4 * (num_classes + 1))
        # Fast R-CNN's initialisation of the two output layers.
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.classifier = cfg.classifier
        if self.classifier == "sigmoid":
            # The background column stays unused: a sigmoid classifier scores foreground only.
            with torch.no_grad():
                self.cls_score.bias[1:] = -math.log((1.0 - prior) / prior)
        # The box targets' per-class statistics: buffers, so that the checkpoint carries them and
        # evaluation decodes as training encoded (model.box_norm).
        fixed = BoxNorm.fixed(num_classes)
        self.box_means: Tensor  # buffers: declared for the type checker (nn.Module's getattr)
        self.box_stds: Tensor
        self.register_buffer("box_means", fixed.means)
        self.register_buffer("box_stds", fixed.stds)
        # Built last, so that a fast-rcnn model's initial weights are those of the same seed
        # before faster-rcnn existed, and a faster-rcnn one shares them up to its RPN.
        self.rpn: ProposalNetwork | None = None
        if cfg.detector == "faster-rcnn":
            self.rpn = ProposalNetwork(cfg, scale, backbone.channels, backbone.stride)

    @contextmanager
    def head_dropout(self, on: bool) -> Iterator[None]:
        """The RoI head in train mode (dropout on) when ``on`` (and the head was training), else
        in eval mode, for the block; its mode is put back after."""
        was = self.head.training
        self.head.train(on and was)
        try:
            yield
        finally:
            self.head.train(was)

    def set_box_norm(self, norm: BoxNorm) -> None:
        """Decode with ``norm`` (the statistics the box targets were normalised with)."""
        self.box_means.copy_(norm.means)
        self.box_stds.copy_(norm.stds)

    def features(self, images: Tensor) -> Tensor:
        """Conv feature map of a padded image batch."""
        return self.trunk(images)

    def roi_forward(self, features: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits (R, K+1), box deltas (R, 4(K+1)) of RoIs (R, 5): image, x1, y1, x2, y2."""
        return self.head_forward(self.pool(features, rois))

    def head_forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits (R, K+1), box deltas (R, 4(K+1)) of pooled RoIs (R, C, S, S)."""
        x = self.head(pooled)
        return self.cls_score(x), self.bbox_pred(x)

    def rank_pool(self, features: Tensor, rois: Tensor) -> PooledRoIs:
        """Every RoI of ``rois`` (R, 5) pooled for a read-only pass, without autograd, in float32;
        :meth:`pool_chosen` then takes the training pass's rows from it instead of pooling them
        again (see ohemcli.model.roi_pooling)."""
        scale = 1.0 / self.stride
        if self.roi_op != "pool":  # RoIAlign has no argmax to reuse: pool_chosen pools again
            return PooledRoIs(self.pool(features, rois).float(), rois, None, scale)
        with torch.autocast(features.device.type, enabled=False):
            return pool_with_argmax(features.float(), rois.float(), self.roi_size, scale)

    def pool_chosen(self, features: Tensor, ranked: PooledRoIs, index: Tensor) -> Tensor:
        """Rows ``index`` of :meth:`rank_pool`'s ``ranked``, with autograd into ``features``:
        values and gradients bit for bit those of :meth:`pool` over ``ranked.rois[index]``."""
        if ranked.argmax is None:
            return self.pool(features, ranked.rois[index])
        with torch.autocast(features.device.type, enabled=False):
            pooled = chosen_rows(features.float(), ranked, index)
        return pooled.to(features.dtype)

    def pool(self, features: Tensor, rois: Tensor) -> Tensor:
        """RoI pooling (or align) of ``rois`` (R, 5), computed in float32, in ``features``' dtype.

        The boxes stay float32 whatever the features' dtype: in bfloat16 a coordinate near 600
        rounds to a multiple of 4 px, and the pooled box would no longer be the one the targets
        describe. torchvision's CUDA autocast kernel also pools in float32, but only after the
        caller's cast; on the CPU the op has no bfloat16 kernel at all.
        """
        size, scale = (self.roi_size, self.roi_size), 1.0 / self.stride
        with torch.autocast(features.device.type, enabled=False):
            x, boxes = features.float(), rois.float()
            if self.roi_op == "pool":
                pooled = roi_pool(x, boxes, size, scale)
            else:
                pooled = roi_align(x, boxes, size, scale, sampling_ratio=2, aligned=True)
        return pooled.to(features.dtype)

    def roi_losses(
        self,
        features: Tensor,
        rois: Tensor,
        labels: Tensor,
        box_targets: Tensor,
        with_boxes: bool = False,
    ) -> RoILosses:
        """Per-RoI losses and logits; wrap in ``torch.no_grad()`` for a read-only pass.

        ``with_boxes`` also decodes each RoI's box for its highest-scoring foreground class
        (``pred_boxes``; pisa's ISR-N groups negatives by them).
        """
        return self.head_losses(self.pool(features, rois), rois, labels, box_targets, with_boxes)

    def head_losses(
        self,
        pooled: Tensor,
        rois: Tensor,
        labels: Tensor,
        box_targets: Tensor,
        with_boxes: bool = False,
    ) -> RoILosses:
        """:meth:`roi_losses` of RoIs (R, 5) already pooled (R, C, S, S)."""
        cls_logits, box_deltas = self.head_forward(pooled)
        losses = per_roi_loss(cls_logits, box_deltas, labels, box_targets)
        if not with_boxes or self.num_classes == 0:
            return losses
        top = cls_logits[:, 1:].argmax(dim=1) + 1
        deltas = box_deltas.view(len(top), -1, 4)[torch.arange(len(top)), top]
        return losses._replace(pred_boxes=self.decode_class(rois[:, 1:], deltas, top))

    def class_probs(self, logits: Tensor) -> Tensor:
        """Class probabilities (R, K+1) in float32: a softmax, or under the sigmoid classifier
        each foreground class's sigmoid, with 1 − the highest of them in the background column
        (only the foreground columns score detections)."""
        logits = logits.float()
        if self.classifier != "sigmoid":
            return logits.softmax(dim=1)
        fg = logits[:, 1:].sigmoid()
        top = fg.max(dim=1, keepdim=True).values if fg.shape[1] else fg.new_zeros(len(fg), 1)
        return torch.cat([1.0 - top, fg], dim=1)

    def decode_class(self, boxes: Tensor, deltas: Tensor, labels: Tensor) -> Tensor:
        """Boxes (R, 4) moved by normalised ``deltas`` (R, 4) of class ``labels`` (R,), with the
        box statistics of each class (the inverse of the training targets' encoding)."""
        return decode(boxes.float(), deltas.float(), self.box_stds[labels], self.box_means[labels])

    @torch.no_grad()
    def detect(
        self,
        images: Tensor,
        rois: list[Tensor],
        cfg: EvalConfig,
        image_sizes: list[tuple[int, int]],
        features: Tensor | None = None,
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Detections per image as (boxes (D, 4), scores (D,), labels (D,) in 1..K).

        ``features``: the trunk's map of ``images`` when the caller has it (faster-rcnn's
        proposals came from it), else computed here.

        Boxes are in the input (resized) image's coordinates, clipped to ``image_sizes`` (h, w).
        Per class: drop scores under ``cfg.score_thresh``, NMS at ``cfg.nms``; then keep the
        ``cfg.max_dets`` highest scores of the image. Under ``eval.protocol: fast-rcnn``: each
        class's 100 highest scores, before any threshold or NMS (see evaluation.protocols).
        """
        features = self.features(images) if features is None else features
        logits, deltas = self.roi_forward(features, rois_with_batch_index(rois))
        probs = self.class_probs(logits)
        deltas = deltas.float().view(len(deltas), -1, 4)
        results, start = [], 0
        for i, image_rois in enumerate(rois):
            end = start + len(image_rois)
            results.append(
                self._postprocess(
                    image_rois, probs[start:end], deltas[start:end], cfg, image_sizes[i]
                )
            )
            start = end
        return results

    def _postprocess(
        self, rois: Tensor, probs: Tensor, deltas: Tensor, cfg: EvalConfig, size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        k, r = self.num_classes, len(rois)
        stds, means = self.box_stds[1:].repeat(r, 1), self.box_means[1:].repeat(r, 1)
        boxes = decode(
            rois.repeat_interleave(k, dim=0), deltas[:, 1:].reshape(-1, 4), stds, means
        ).view(-1, k, 4)
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, size[1])
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, size[0])
        scores = probs[:, 1:]
        labels = torch.arange(1, k + 1, device=probs.device).expand_as(scores)
        if cfg.protocol == "fast-rcnn":
            return _top_per_class(boxes, scores, labels)
        keep = scores > cfg.score_thresh
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, cfg.nms)[: cfg.max_dets]
        return boxes[keep], scores[keep], labels[keep]


def _top_per_class(boxes: Tensor, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ``fast-rcnn`` protocol's per-image part: each class's 100 highest scores, no floor and
    no NMS yet (the set-wide thresholds and NMS follow in ohemcli.evaluation.protocols)."""
    top = min(FAST_RCNN_MAX_PER_IMAGE, len(scores))
    index = scores.topk(top, dim=0).indices  # (top, K), best first in each class
    column = torch.arange(scores.shape[1], device=scores.device).expand_as(index)
    picked = (index, column)
    return boxes[picked].reshape(-1, 4), scores[picked].reshape(-1), labels[picked].reshape(-1)


def without_pretrained(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` building random weights (``model.pretrained: none``, no ``--weights``) with the same
    input normalisation: for a model whose weights a checkpoint will replace."""
    model = replace(cfg.model, pretrained="none", weights=None, input_norm=input_norm(cfg.model))
    return replace(cfg, model=model)


def build_model(cfg: ExperimentConfig, num_classes: int, device: torch.device) -> FastRCNN:
    """Fast R-CNN with initial weights that depend only on the seed (the same for every sampler)."""
    torch.manual_seed(cfg.train.seed)
    model = FastRCNN(cfg.model, num_classes, cfg.sampler.focal_prior, cfg.data.scale)
    return model.to(device)
