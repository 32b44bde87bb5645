"""ohem-mmdet: top-k by classification loss within the positive quota and the negatives."""

import torch

from ohemcli.config import SamplerConfig
from ohemcli.model.losses import RoILosses
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs


def _rois(labels):
    n = len(labels)
    return ImageRoIs(
        torch.zeros(n, 4), torch.tensor(labels), torch.zeros(n), torch.zeros(n, 4), "i"
    )


def _select(labels, cls, num, box=None):
    box = torch.zeros(len(cls)) if box is None else torch.tensor(box)
    losses = RoILosses(torch.tensor(cls), box)
    sampler = build_sampler(SamplerConfig(name="ohem-mmdet"))
    return sampler.select(_rois(labels), losses, num, torch.Generator()).tolist()


def test_hardest_by_cls_loss_within_quota_and_negatives():
    labels = [1, 1, 1, 0, 0, 0, 0, 0]
    cls = [0.5, 2.0, 1.0, 0.1, 3.0, 0.2, 3.0, 0.9]
    # quota int(4 * 0.25) = 1: positive 1 (loss 2.0); then 3 negatives: 4 and 6 (3.0, tie kept in
    # position order), 7 (0.9). The box loss (huge on RoI 0 and 3) plays no part.
    box = [9.0, 0, 0, 9.0, 0, 0, 0, 0]
    assert _select(labels, cls, 4, box) == [1, 4, 6, 7]


def test_quota_is_rounded_down_and_negatives_fill_the_rest():
    labels = [1, 1, 1] + [0] * 10
    cls = [3.0, 2.0, 1.0] + [float(i) for i in range(10)]
    # int(6 * 0.25) = 1 positive (round() would give 2); 5 negatives of highest loss: 12..8
    assert _select(labels, cls, 6) == [0, 12, 11, 10, 9, 8]


def test_few_candidates_are_all_taken():
    # 1 positive (under the quota of 2) and 3 negatives (under the 7 wanted): all 4, no padding
    assert sorted(_select([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], 8)) == [0, 1, 2, 3]
    assert _select([0, 0, 0], [0.5, 0.9, 0.1], 2) == [1, 0]  # no positive: all negatives
