"""The per-RoI loss that both ranks RoIs (ohem's read-only pass) and trains them, and the
reductions of the chosen RoIs' losses into one training loss (``ce``, ``focal``, ``guided``,
``pisa``) that a sampler names in its :class:`~ohemcli.samplers.base.Selection`."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# The training losses a sampler may ask for (Selection.loss); "ce" is Fast R-CNN's, "focal" the
# sigmoid focal loss (mmdetection's FocalLoss), "softmax-focal" its softmax variant.
LOSS_KINDS = ("ce", "focal", "softmax-focal", "guided", "pisa")


class RoILosses(NamedTuple):
    """Per-RoI loss terms, no reduction, and the head's outputs they came from."""

    cls: Tensor  # (R,) cross-entropy
    box: Tensor  # (R,) smooth L1 over the 4 deltas of the ground-truth class; 0 for background
    logits: Tensor | None = None  # (R, K+1) class logits (for scores: focal, pisa)
    pred_boxes: Tensor | None = None  # (R, 4) read-only pass: decoded box of the top fg class
    deltas: Tensor | None = None  # (R, 4) predicted deltas of the ground-truth class (pisa ISR-P)

    @property
    def total(self) -> Tensor:
        """Classification plus box loss of each RoI."""
        return self.cls + self.box


def per_roi_loss(
    cls_logits: Tensor, box_deltas: Tensor, labels: Tensor, box_targets: Tensor
) -> RoILosses:
    """Fast R-CNN's multi-task loss for each RoI separately.

    ``cls_logits`` (R, K+1); ``box_deltas`` (R, 4(K+1)) class-specific; ``labels`` (R,) with 0 for
    background; ``box_targets`` (R, 4) normalised deltas. The box term sums smooth L1 (beta 1) over
    the 4 deltas of the RoI's ground-truth class and is zero for background.
    """
    loss_cls = F.cross_entropy(cls_logits.float(), labels, reduction="none")
    deltas = box_deltas.float().view(len(labels), box_deltas.shape[1] // 4, 4)  # ok for R = 0
    chosen = deltas[torch.arange(len(labels), device=labels.device), labels]
    loss_box = F.smooth_l1_loss(chosen, box_targets, beta=1.0, reduction="none").sum(dim=1)
    loss_box = loss_box * (labels > 0).to(loss_box.dtype)
    return RoILosses(loss_cls, loss_box, cls_logits, None, chosen)


class LossTerms(NamedTuple):
    """The training loss of a mini-batch, as its two logged terms (scalars); total = cls + box."""

    cls: Tensor
    box: Tensor


def _zero(losses: RoILosses) -> Tensor:
    # A zero that keeps the autograd graph, so that backward still runs (and does nothing).
    return (losses.cls.sum() + losses.box.sum()) * 0.0


def sigmoid_focal_terms(
    logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> Tensor:
    """Sigmoid focal loss of each RoI (Lin et al. 2017; mmdetection's ``FocalLoss`` with
    ``use_sigmoid=True``): ``torchvision.ops.sigmoid_focal_loss`` over the K foreground logits
    (``logits[:, 1:]``; a background RoI's targets are all 0), summed over the classes.

    ``logits`` (R, K+1), ``labels`` (R,) with 0 for background."""
    # Imported here: samplers import this module, and `ohem report` must not load torchvision.
    from torchvision.ops import sigmoid_focal_loss

    fg_logits = logits.float()[:, 1:]
    targets = F.one_hot(labels, num_classes=logits.shape[1])[:, 1:].to(fg_logits.dtype)
    loss = sigmoid_focal_loss(fg_logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    return loss.sum(dim=1)


def focal_terms(losses: RoILosses, labels: Tensor, gamma: float = 2.0) -> Tensor:
    """Softmax focal loss of each RoI, ``(1 - p_t)^gamma * CE`` (Lin et al. 2017).

    ``p_t = exp(-CE)`` is the softmax probability of the true class, so no logits are needed;
    the gradient flows through both factors, as in the paper's definition.
    """
    p_t = torch.exp(-losses.cls)
    return (1.0 - p_t).clamp(min=0.0).pow(gamma) * losses.cls


def reduce_losses(
    kind: str,
    losses: RoILosses,
    labels: Tensor,
    cls_weight: Tensor | None = None,
    box_weight: Tensor | None = None,
    gamma: float = 2.0,
    alpha: float = 0.25,
    focal_norm: str = "rois",
) -> LossTerms:
    """One training loss from the chosen RoIs' per-RoI losses (``labels``: 0 = background).

    - ``ce``: Fast R-CNN's: (weighted) sums over the chosen RoIs divided by their number.
    - ``focal``: sigmoid focal loss (``gamma``, ``alpha``; :func:`sigmoid_focal_terms`) summed
      over the RoIs, and smooth L1 over the foreground, both divided by the number of RoIs, as
      mmdetection's R-CNN head divides them (``BBoxHead.loss``: ``avg_factor`` the sampled
      RoIs); ``focal_norm="fg"`` divides by the foreground count instead (RetinaNet's anchors).
    - ``softmax-focal``: the same with the softmax form (:func:`focal_terms`, no ``alpha``).
    - ``guided``: sampling-free (ChenJoya/sampling-free ``box_head/loss.py``): CE averaged over
      all RoIs, smooth L1 averaged over the foreground's 4 deltas (maskrcnn-benchmark's
      ``size_average=True`` is a mean over elements), then ``L_cls <- 2 L_cls (L_reg/L_cls)``
      with the ratio detached. No foreground: both terms 0, as the reference returns.
    - ``pisa``: as ``ce`` (its weights come from ISR-N and ISR-P); CARL is added by
      :func:`carl_term`.

    ``cls_weight``/``box_weight`` multiply each RoI's term (None: 1).
    """
    cls = losses.cls if cls_weight is None else losses.cls * cls_weight
    box = losses.box if box_weight is None else losses.box * box_weight
    count = max(1, len(labels))
    num_fg = int((labels > 0).sum().item())
    if kind in ("ce", "pisa"):
        return LossTerms(cls.sum() / count, box.sum() / count)
    if kind in ("focal", "softmax-focal"):
        if kind == "focal":
            if losses.logits is None:
                raise ValueError("the sigmoid focal loss needs the head's logits")
            focal = sigmoid_focal_terms(losses.logits, labels, gamma, alpha)
        else:
            focal = focal_terms(losses, labels, gamma)
        if cls_weight is not None:
            focal = focal * cls_weight
        norm = max(1, num_fg) if focal_norm == "fg" else count
        return LossTerms(focal.sum() / norm, box.sum() / norm)
    if kind == "guided":
        if num_fg == 0:
            return LossTerms(_zero(losses), _zero(losses))
        loss_cls = cls.sum() / count
        loss_box = box.sum() / (4 * num_fg)
        with torch.no_grad():
            ratio = loss_box / loss_cls if loss_cls.item() > 0 else torch.zeros_like(loss_box)
        return LossTerms(2.0 * loss_cls * ratio, loss_box)
    raise ValueError(f"unknown loss {kind!r} (choose from {', '.join(LOSS_KINDS)})")


def carl_term(losses: RoILosses, labels: Tensor, k: float = 1.0, bias: float = 0.2) -> Tensor:
    """PISA's classification-aware regression loss (mmdetection ``pisa_loss.carl_loss``).

    Each foreground RoI's smooth L1 is weighted by ``(bias + (1 - bias) * p)^k``, ``p`` its
    softmax score of the true class *with* gradient (so regression quality feeds back into
    classification); the weights are rescaled to sum to the number of foreground RoIs, and the
    sum is divided by the number of chosen RoIs (mmdetection's ``avg_factor``).
    """
    fg = labels > 0
    if losses.logits is None or not bool(fg.any()):
        return _zero(losses)
    probs = losses.logits.float().softmax(-1)[fg, labels[fg]]
    weights = (bias + (1.0 - bias) * probs).pow(k)
    weights = weights * (fg.sum() / weights.sum())
    return (losses.box[fg] * weights).sum() / max(1, len(labels))


def isr_p_weights(
    iou: Tensor,
    labels: Tensor,
    gt_index: Tensor,
    cls_loss: Tensor,
    k: float = 2.0,
    bias: float = 0.0,
) -> Tensor:
    """PISA's ISR-P: weights of the foreground RoIs by IoU hierarchical local rank.

    ``iou``, ``labels``, ``gt_index`` (unique over the batch) and ``cls_loss`` (detached CE) are
    those of the foreground RoIs only. As mmdetection's ``pisa_loss.isr_p``: within each class,
    each ground truth's RoIs are ranked by IoU (rank r, 0 = best) and get ``IoU + max_n - r``
    (``max_n``: the largest class count), so that the first of every object outranks every
    second; the class's RoIs are ranked again by that value (rank R) and weighted
    ``((max_n - R) / max_n)``, then ``(bias + (1 - bias) w)^k``, and finally rescaled so that the
    weighted CE of the foreground equals the unweighted one.
    """
    if labels.numel() == 0:
        return cls_loss.new_ones(0)
    value = iou.float().clone()
    weights = torch.ones_like(value)
    max_n = float(torch.bincount(labels).max().item())
    for label in labels.unique():
        in_label = torch.nonzero(labels == label).flatten()
        for gt in gt_index[in_label].unique():
            members = in_label[gt_index[in_label] == gt]
            order = torch.sort(value[members], descending=True, stable=True).indices
            rank = torch.empty_like(order)
            rank[order] = torch.arange(len(order), device=order.device)
            value[members] += max_n - rank.float()
        order = torch.sort(value[in_label], descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device)
        weights[in_label] = (max_n - rank.float()) / max_n
    weights = (bias + (1.0 - bias) * weights).pow(k)
    new = (cls_loss * weights).sum()
    return weights * (cls_loss.sum() / new) if new.item() > 0 else weights
