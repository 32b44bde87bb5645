"""The per-RoI loss against hand computations, and box coding."""

import math

import torch

from ohemcli.boxes import decode, encode
from ohemcli.model.losses import per_roi_loss


def test_per_roi_loss_golden_values():
    # Two classes + background. RoI 0 is class 1, RoI 1 is background.
    logits = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    deltas = torch.zeros(2, 12)
    deltas[0, 4:8] = torch.tensor([0.5, -2.0, 0.0, 0.0])  # class-1 deltas of RoI 0
    deltas[1, 4:8] = torch.tensor([9.0, 9.0, 9.0, 9.0])  # must be ignored: RoI 1 is background
    labels = torch.tensor([1, 0])
    targets = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    losses = per_roi_loss(logits, deltas, labels, targets)
    # cross-entropy by hand: -log softmax
    ce0 = -(1.0 - math.log(math.exp(0) + math.exp(1) + math.exp(0)))
    ce1 = -(2.0 - math.log(math.exp(2) + 1 + 1))
    assert torch.allclose(losses.cls, torch.tensor([ce0, ce1]), atol=1e-6)
    # smooth L1 (beta 1): |0.5| -> 0.5*0.25 = 0.125; |-2| -> 1.5; 0 -> 0; |0-1| = 1 -> 0.5
    assert torch.allclose(losses.box, torch.tensor([0.125 + 1.5 + 0.0 + 0.5, 0.0]))
    assert torch.allclose(losses.total, losses.cls + losses.box)


def test_box_targets_are_normalised_by_stds():
    roi = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = torch.tensor([[1.0, 2.0, 11.0, 22.0]])  # shift by (1, 2), same size
    t = encode(roi, gt)
    # dx = 1/10 / 0.1 = 1, dy = 2/20 / 0.1 = 1, dw = dh = 0
    assert torch.allclose(t, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(decode(roi, t), gt, atol=1e-5)


def test_decode_inverts_encode_on_random_boxes():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=gen) * 100
    wh = torch.rand(50, 2, generator=gen) * 80 + 5
    rois = torch.cat([xy, xy + wh], 1)
    gt = rois + torch.randn(50, 4, generator=gen)
    assert torch.allclose(decode(rois, encode(rois, gt)), gt, atol=1e-3)


def test_no_rois_gives_empty_losses():
    losses = per_roi_loss(
        torch.zeros(0, 3), torch.zeros(0, 12), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)
    )
    assert losses.cls.shape == losses.box.shape == (0,)
