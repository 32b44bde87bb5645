"""Prime Sample Attention (Cao et al., CVPR 2020), as mmdetection runs it.

The sampler is mmdetection's ``ScoreHLRSampler`` (ISR-N); the loss (``pisa``, see
``model.losses``) adds ISR-P and CARL on the training forward.

- Positives: ``int(num * 0.25)`` at random (all when fewer).
- Negatives (every label-0 RoI), from the read-only pass: a negative is *valid* when its highest
  foreground score is above ``score_thr`` (0.05). Valid negatives are grouped by NMS-match
  (IoU >= ``iou_thr`` 0.5) of their predicted boxes (the highest-scoring foreground class's),
  ranked within each group by score, then across groups (the first of every group before any
  second): that is the score hierarchical local rank (HLR). The ``need`` best-ranked valid
  negatives are taken, the rest drawn at random from the invalid ones.
- Weights of the chosen negatives: ``(U - rank) / U`` with ``U = max(need, valid)`` (random ones
  get the smallest of those), mapped by ``(bias + (1 - bias) w)^k`` (k 0.5, bias 0) and rescaled
  so that the chosen negatives' weighted read-only CE equals their unweighted CE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from ohemcli.model.losses import LossTerms, RoILosses, carl_term, isr_p_weights, reduce_losses
from ohemcli.samplers.base import ImageRoIs, Selection, Stateless, random_subset

# Boxes (R, 4) moved by normalised deltas (R, 4) of classes (R,): FastRCNN.decode_class.
BoxDecoder = Callable[[Tensor, Tensor, Tensor], Tensor]


def nms_match(boxes: Tensor, scores: Tensor, iou_thr: float) -> list[Tensor]:
    """Groups of positions as mmcv's ``nms_match``: in decreasing score, each box not yet taken
    opens a group with every later untaken box overlapping it at IoU >= ``iou_thr`` (areas
    without +1), the group in decreasing score."""
    from torchvision.ops import box_iou  # training only

    order = torch.sort(scores, descending=True, stable=True).indices
    # The greedy walk runs in numpy: a few hundred valid negatives per image made one small
    # torch op per step cost ~50 ms an iteration (ohem bench's "select" of pisa on synth_tiny).
    near = (box_iou(boxes[order].float(), boxes[order].float()) >= iou_thr).cpu().numpy()
    taken = np.zeros(len(order), dtype=bool)
    groups = []
    for i in range(len(order)):
        if taken[i]:
            continue
        members = np.flatnonzero(near[i, i + 1 :] & ~taken[i + 1 :]) + i + 1
        taken[members] = True
        groups.append(order[torch.from_numpy(np.concatenate([[i], members]))])
    return groups


def score_hlr(scores: Tensor, groups: list[Tensor]) -> Tensor:
    """Rank (0 = first) of each valid negative by score-HLR: ``valid - rank_in_group + score``,
    highest first."""
    importance = torch.zeros_like(scores, dtype=torch.float32)
    if groups:  # all groups at once: each member's place in its group, then the same float32 sum
        members = torch.cat(groups)
        sizes = torch.tensor([len(g) for g in groups])
        starts = torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
        place = torch.arange(len(members)) - starts
        importance[members] = len(scores) - place.float() + scores[members].float()
    order = torch.sort(importance, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank


def isr_n(
    neg_cls_loss: Tensor,
    max_score: Tensor,
    pred_boxes: Tensor,
    need: int,
    gen: torch.Generator,
    k: float = 0.5,
    bias: float = 0.0,
    score_thr: float = 0.05,
    iou_thr: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Positions (into the negatives) of ``need`` negatives and their loss weights (ISR-N)."""
    num_neg = len(neg_cls_loss)
    need = min(num_neg, need)
    valid = torch.nonzero(max_score > score_thr).flatten()
    invalid = torch.nonzero(max_score <= score_thr).flatten()
    if valid.numel() == 0:
        chosen = random_subset(torch.arange(num_neg), need, gen)
        return chosen, torch.ones(len(chosen))
    num_hlr = min(len(valid), need)
    groups = nms_match(pred_boxes[valid], max_score[valid], iou_thr)
    rank = score_hlr(max_score[valid], groups)
    best = torch.sort(rank).indices[:num_hlr]  # positions into valid, best HLR first
    chosen = torch.cat([valid[best], random_subset(invalid, need - num_hlr, gen)])
    upper = max(need, len(valid))
    weights = torch.ones(need)
    hlr_weights = (upper - rank[best].float()) / upper
    weights[:num_hlr] = hlr_weights
    weights[num_hlr:] = hlr_weights.min()
    weights = (bias + (1.0 - bias) * weights).pow(k)
    loss = neg_cls_loss[chosen].float()
    new = (loss * weights).sum()
    if new.item() > 0:
        weights = weights * (loss.sum() / new)
    return chosen, weights


class PISASampler(Stateless):
    """Random positives, score-HLR negatives with ISR-N weights; trained with the pisa loss."""

    needs_roi_losses = True
    needs_pred_boxes = True  # the read-only pass also decodes each RoI's top-class box
    needs_mining = False

    def __init__(
        self,
        fg_fraction: float = 0.25,
        k: float = 0.5,
        bias: float = 0.0,
        score_thr: float = 0.05,
        iou_thr: float = 0.5,
        isr_p: bool = True,
        carl: bool = True,
    ) -> None:
        """ISR-N's numbers; ``isr_p``/``carl`` switch the loss's two parts (k 2/bias 0, k 1/bias
        0.2, mmdetection's config)."""
        self.fg_fraction, self.k, self.bias = fg_fraction, k, bias
        self.score_thr, self.iou_thr = score_thr, iou_thr
        self.loss_options = {"isr_p": float(isr_p), "carl": float(carl)}

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Selection:
        """Positives at random, then ISR-N's negatives, with the negatives' cls weights."""
        if roi_losses is None or roi_losses.logits is None or roi_losses.pred_boxes is None:
            raise ValueError("pisa needs the scores and boxes of the read-only pass")
        fg = torch.nonzero(rois.labels > 0).flatten()
        bg = torch.nonzero(rois.labels == 0).flatten()
        chosen_fg = random_subset(fg, int(num * self.fg_fraction), gen)
        scores = roi_losses.logits[bg].float().softmax(-1)[:, 1:]
        max_score = scores.max(dim=1).values if scores.shape[1] else torch.zeros(len(bg))
        picked, neg_weights = isr_n(
            roi_losses.cls[bg].cpu(),
            max_score.cpu(),
            roi_losses.pred_boxes[bg].cpu(),
            num - chosen_fg.numel(),
            gen,
            self.k,
            self.bias,
            self.score_thr,
            self.iou_thr,
        )
        device = rois.labels.device
        indices = torch.cat([chosen_fg, bg[picked.to(bg.device)]])
        weights = torch.cat([torch.ones(len(chosen_fg)), neg_weights]).to(device)
        return Selection(indices, cls_weight=weights, loss="pisa")


def pisa_pos_weights(
    decode: BoxDecoder,
    images: list[ImageRoIs],
    selections: list[Selection],
    losses: RoILosses,
    labels: Tensor,
    weights: Tensor | None,
) -> Tensor:
    """The chosen RoIs' cls ``weights`` (None: 1 each) with PISA's ISR-P on the foreground (see
    :func:`ohemcli.model.losses.isr_p_weights`): IoU of the (detached) predicted box with the
    target box, both decoded from the RoI by ``decode`` (``FastRCNN.decode_class``); each
    image's ground truths numbered apart."""
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
        pred = decode(boxes, losses.deltas[fg].detach(), labels[fg])
        target = decode(boxes, targets, labels[fg])
        iou = box_iou(pred, target).diagonal()
        weights = weights.clone()
        # ISR-P keeps each positive's original weight as the normaliser's reference (1 here).
        weights[fg] = isr_p_weights(iou, labels[fg], torch.cat(gts)[fg], losses.cls[fg].detach())
    return weights


def pisa_loss(
    decode: BoxDecoder,
    images: list[ImageRoIs],
    selections: list[Selection],
    losses: RoILosses,
    labels: Tensor,
    cls_w: Tensor | None,
    box_w: Tensor | None,
    options: Mapping[str, float | str],
) -> LossTerms:
    """PISA's training loss: cross-entropy with ISR-P's positive weights (``isr_p``) and smooth
    L1, plus CARL's term (``carl``, with ``carl_k`` and ``carl_bias``) on the box loss."""
    if options.get("isr_p", 1.0):
        cls_w = pisa_pos_weights(decode, images, selections, losses, labels, cls_w)
    terms = reduce_losses("pisa", losses, labels, cls_w, box_w)
    if options.get("carl", 1.0):
        carl = carl_term(
            losses, labels, float(options.get("carl_k", 1.0)), float(options.get("carl_bias", 0.2))
        )
        terms = LossTerms(terms.cls, terms.box + carl)
    return terms
