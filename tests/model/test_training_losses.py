"""The training losses a sampler can name (ce, focal, guided, pisa's parts), by hand."""

import math

import pytest
import torch

from ohemcli.model.losses import (
    RoILosses,
    carl_term,
    isr_p_weights,
    reduce_losses,
    sigmoid_focal_terms,
)


def test_ce_with_weights_is_the_weighted_sum_over_the_chosen_count():
    losses = RoILosses(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.5, 0.0, 0.0]))
    labels = torch.tensor([1, 0, 0])
    plain = reduce_losses("ce", losses, labels)
    assert plain.cls.item() == pytest.approx(7.0 / 3) and plain.box.item() == pytest.approx(0.5 / 3)
    w = reduce_losses(
        "ce", losses, labels, torch.tensor([1.0, 0.5, 0.25]), torch.tensor([2.0, 1, 1])
    )
    assert w.cls.item() == pytest.approx((1 + 1 + 1) / 3) and w.box.item() == pytest.approx(1 / 3)


def test_softmax_focal_by_hand_with_either_normaliser():
    # CE ln 2 and ln 4: p_t = 1/2 and 1/4, (1 - p_t)^2 = 1/4 and 9/16
    losses = RoILosses(torch.tensor([math.log(2), math.log(4)]), torch.tensor([0.4, 0.0]))
    summed = 0.25 * math.log(2) + 9 / 16 * math.log(4)
    terms = reduce_losses("softmax-focal", losses, torch.tensor([1, 0]), gamma=2.0, focal_norm="fg")
    assert terms.cls.item() == pytest.approx(summed)
    assert terms.box.item() == pytest.approx(0.4)  # one foreground RoI
    gamma0 = reduce_losses(
        "softmax-focal", losses, torch.tensor([1, 0]), gamma=0.0, focal_norm="fg"
    )
    assert gamma0.cls.item() == pytest.approx(math.log(8))  # gamma 0: summed CE
    per_roi = reduce_losses("softmax-focal", losses, torch.tensor([1, 0]), gamma=2.0)
    assert per_roi.cls.item() == pytest.approx(summed / 2)  # the default: over the 2 RoIs
    assert per_roi.box.item() == pytest.approx(0.2)


def _sigmoid_focal_by_hand(x: float, target: int, alpha: float, gamma: float) -> float:
    """Lin et al.'s FL for one logit, written out: -alpha_t (1 - p_t)^gamma log p_t."""
    p = 1.0 / (1.0 + math.exp(-x))
    p_t = p if target else 1.0 - p
    alpha_t = alpha if target else 1.0 - alpha
    return -alpha_t * (1.0 - p_t) ** gamma * math.log(p_t)


def test_sigmoid_focal_matches_torchvision_and_the_formula_on_hand_made_logits():
    from torchvision.ops import sigmoid_focal_loss

    # 3 RoIs, K = 2 classes (+ the unused background column 0): labels 2, 0 (background), 1
    logits = torch.tensor([[9.0, -1.0, 2.0], [0.0, 0.5, -3.0], [-4.0, 1.5, 0.25]])
    labels = torch.tensor([2, 0, 1])
    per_roi = sigmoid_focal_terms(logits, labels, gamma=2.0, alpha=0.25)
    targets = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    reference = sigmoid_focal_loss(logits[:, 1:], targets, alpha=0.25, gamma=2.0, reduction="none")
    assert torch.allclose(per_roi, reference.sum(dim=1))
    by_hand = [
        sum(
            _sigmoid_focal_by_hand(float(x), int(t), 0.25, 2.0)
            for x, t in zip(row, trow, strict=True)
        )
        for row, trow in zip(logits[:, 1:], targets, strict=True)
    ]
    assert per_roi.tolist() == pytest.approx(by_hand, rel=1e-5)
    # the background logit (column 0) plays no part: 9.0 and -4.0 change nothing
    assert torch.allclose(per_roi, sigmoid_focal_terms(logits * torch.tensor([0.0, 1, 1]), labels))
    # reduce_losses: summed over the RoIs and divided by their number (mmdetection's R-CNN head)
    box = torch.tensor([0.3, 0.0, 0.6])
    terms = reduce_losses("focal", RoILosses(torch.zeros(3), box, logits), labels)
    assert terms.cls.item() == pytest.approx(sum(by_hand) / 3, rel=1e-5)
    assert terms.box.item() == pytest.approx(0.9 / 3)
    fg_norm = reduce_losses(
        "focal", RoILosses(torch.zeros(3), box, logits), labels, focal_norm="fg"
    )
    assert fg_norm.cls.item() == pytest.approx(sum(by_hand) / 2, rel=1e-5)


def test_guided_scaling_by_hand_value_and_gradient():
    cls = torch.tensor([1.0, 0.5, 0.3, 0.2], requires_grad=True)
    box = torch.tensor([0.8, 0.0, 0.0, 0.0], requires_grad=True)
    terms = reduce_losses("guided", RoILosses(cls, box), torch.tensor([1, 0, 0, 0]))
    # L_cls = mean CE 0.5; L_reg = 0.8 / (4 deltas x 1 fg) = 0.2; 2 * 0.5 * (0.2 / 0.5) = 0.4
    assert terms.box.item() == pytest.approx(0.2) and terms.cls.item() == pytest.approx(0.4)
    terms.cls.backward()
    # the ratio is detached: d/dCE_i = 2 * 0.4 / 4 = 0.2 each, nothing into the box loss
    assert torch.allclose(cls.grad, torch.full((4,), 0.2)) and box.grad is None


def test_guided_without_foreground_is_zero_and_keeps_the_graph():
    cls = torch.tensor([1.0, 2.0], requires_grad=True)
    terms = reduce_losses("guided", RoILosses(cls, torch.zeros(2)), torch.tensor([0, 0]))
    assert terms.cls.item() == 0.0 and terms.box.item() == 0.0
    (terms.cls + terms.box).backward()
    assert torch.equal(cls.grad, torch.zeros(2))


def test_isr_p_weights_by_iou_hierarchical_local_rank():
    # one class; box 0 has RoIs of IoU .9 and .7, box 1 one of .8; max count 3.
    # local: .9 -> +3, .7 -> +2, .8 -> +3: 3.9, 2.7, 3.8 -> ranks 0, 2, 1
    # weights (3 - rank) / 3 = 1, 1/3, 2/3; k 2 -> 1, 1/9, 4/9; CE all 1: x 3 / (14/9)
    w = isr_p_weights(
        torch.tensor([0.9, 0.7, 0.8]), torch.tensor([1, 1, 1]), torch.tensor([0, 0, 1]),
        torch.ones(3), k=2.0, bias=0.0,
    )  # fmt: skip
    assert torch.allclose(w, torch.tensor([27 / 14, 3 / 14, 12 / 14]))


def test_carl_weights_by_the_true_class_score_with_gradient():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [5.0, 0.0]], requires_grad=True)
    box = torch.tensor([1.0, 2.0, 0.0])
    labels = torch.tensor([1, 1, 0])
    # p = 3/4 and 1/2: (0.2 + 0.8 p) = 0.8, 0.6; rescaled to sum 2: 8/7, 6/7
    carl = carl_term(RoILosses(torch.zeros(3), box, logits), labels, k=1.0, bias=0.2)
    assert carl.item() == pytest.approx((1.0 * 8 / 7 + 2.0 * 6 / 7) / 3)
    carl.backward()
    assert logits.grad is not None and logits.grad[:2].abs().sum() > 0  # feeds classification
