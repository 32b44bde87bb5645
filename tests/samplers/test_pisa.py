"""pisa's ISR-N: score-HLR ranks and weights of the negatives, by hand."""

import math

import torch

from ohemcli.config import SamplerConfig
from ohemcli.model.losses import RoILosses
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs
from ohemcli.samplers.pisa import isr_n, nms_match

BOXES = torch.tensor(
    [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [30, 30, 40, 40]], dtype=torch.float32
)  # 0 and 1 overlap (IoU 9/11); 2 and 3 alone
SCORES = torch.tensor([0.9, 0.8, 0.02, 0.6])  # negative 2 is below score_thr 0.05: not valid
CLS = torch.tensor([2.0, 1.0, 0.5, 3.0])


def test_nms_match_groups_in_score_order():
    groups = nms_match(BOXES, torch.tensor([0.8, 0.9, 0.1, 0.5]), 0.5)
    assert [g.tolist() for g in groups] == [[1, 0], [3], [2]]


def _nms_match_reference(boxes, scores, iou_thr):
    """mmcv's nms_match spelled out one box at a time (the loop the numpy walk replaced)."""
    from torchvision.ops import box_iou

    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes[order], boxes[order])
    taken, groups = [False] * len(order), []
    for i in range(len(order)):
        if taken[i]:
            continue
        group = [i]
        for j in range(i + 1, len(order)):
            if not taken[j] and iou[i, j] >= iou_thr:
                taken[j] = True
                group.append(j)
        groups.append([int(order[k]) for k in group])
    return groups


def test_nms_match_equals_the_one_box_at_a_time_walk():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        xy = torch.rand(150, 2, generator=g) * 100
        boxes = torch.cat([xy, xy + 10 + torch.rand(150, 2, generator=g) * 30], 1)
        scores = torch.rand(150, generator=g).round(decimals=1)  # ties: the stable order counts
        got = [g.tolist() for g in nms_match(boxes, scores, 0.5)]
        assert got == _nms_match_reference(boxes, scores, 0.5)
        assert sorted(i for group in got for i in group) == list(range(150))
        assert any(len(group) > 1 for group in got)


def test_isr_n_ranks_and_weights_by_hand():
    # valid 0, 1, 3: groups {0, 1} and {3}; importance 3 - 0 + .9, 3 - 1 + .8, 3 - 0 + .6
    # = 3.9, 2.8, 3.6 -> order 0, 3, 1 with ranks 0, 1, 2; weights (3 - r) / 3, then ^0.5
    chosen, w = isr_n(CLS, SCORES, BOXES, 3, torch.Generator())
    assert chosen.tolist() == [0, 3, 1]
    raw = torch.tensor([1.0, math.sqrt(2 / 3), math.sqrt(1 / 3)])
    loss = torch.tensor([2.0, 3.0, 1.0])
    assert torch.allclose(w, raw * loss.sum() / (loss * raw).sum())
    assert torch.allclose((w * loss).sum(), loss.sum())  # the summed loss is unchanged


def test_isr_n_fills_from_invalid_with_the_smallest_weight():
    # 4 wanted, 3 valid: U = max(4, 3) = 4, weights (4 - r) / 4 = 1, 3/4, 1/2; the invalid
    # negative drawn at random gets the smallest, 1/2
    chosen, w = isr_n(CLS, SCORES, BOXES, 4, torch.Generator())
    assert chosen.tolist() == [0, 3, 1, 2]
    raw = torch.tensor([1.0, 0.75, 0.5, 0.5]).sqrt()
    loss = CLS[chosen]
    assert torch.allclose(w, raw * loss.sum() / (loss * raw).sum())


def test_isr_n_with_no_valid_negative_is_random_with_unit_weights():
    chosen, w = isr_n(CLS, torch.full((4,), 0.01), BOXES, 2, torch.Generator())
    assert len(set(chosen.tolist())) == 2 and torch.equal(w, torch.ones(2))


def test_pisa_select_takes_random_positives_and_weights_only_negatives():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    rois = ImageRoIs(torch.cat([BOXES, BOXES[:2]]), labels, torch.zeros(6), torch.zeros(6, 4), "i")
    # logits: background 0, one class; foreground softmax = SCORES for the negatives
    fg = torch.cat([SCORES, torch.tensor([0.5, 0.5])])
    logits = torch.stack([torch.zeros(6), torch.log(fg / (1 - fg))], dim=1)
    losses = RoILosses(
        torch.cat([CLS, torch.ones(2)]), torch.zeros(6), logits, BOXES.repeat(2, 1)[:6]
    )
    sel = build_sampler(SamplerConfig(name="pisa")).select(rois, losses, 4, torch.Generator())
    assert sel.loss == "pisa"
    # quota int(4 * .25) = 1 positive, then the 3 best-ranked negatives 0, 3, 1
    assert sel.indices[0].item() in (4, 5) and sel.indices[1:].tolist() == [0, 3, 1]
    assert sel.cls_weight[0].item() == 1.0 and sel.box_weight is None
