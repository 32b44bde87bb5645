"""libra: instance-balanced positives and IoU-balanced negatives, on hand-built IoUs."""

import pytest
import torch

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs
from ohemcli.samplers.libra import instance_balanced_pos, iou_balanced_neg

NEG_IOU = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45]  # bins of [0, 1): 5 in [0, 1/3), 2 in [1/3, 2/3)


def _rois(labels, max_iou, gt_index):
    n = len(labels)
    return ImageRoIs(
        torch.zeros(n, 4),
        torch.tensor(labels),
        torch.tensor(max_iou),
        torch.zeros(n, 4),
        "img",
        torch.tensor(gt_index),
    )


def _image():
    # 7 negatives, then 2 positives (one a ground-truth box, IoU 1.0): the reference's top edge
    labels = [0] * 7 + [1, 1]
    return _rois(labels, NEG_IOU + [0.6, 1.0], [0] * 9)


def _pick(bins: str, seed: int) -> set[float]:
    sampler = build_sampler(SamplerConfig(name="libra", libra_bins=bins))
    chosen = sampler.select(_image(), None, 8, torch.Generator().manual_seed(seed)).tolist()
    assert len(chosen) == 8 and len(set(chosen)) == 8
    assert {7, 8} <= set(chosen)  # 2 positives, under the quota int(8 * 0.25) = 2
    return {NEG_IOU[i] for i in chosen if i < 7}


def test_reference_bins_end_at_the_highest_iou_so_the_top_bin_is_empty():
    # 6 negatives wanted, 2 per bin of [0,1/3), [1/3,2/3), [2/3,1): bin 2 has both of its RoIs
    # (0.4, 0.45) taken, the empty top bin's 2 come at random from the rest of bin 1.
    for seed in range(8):
        got = _pick("reference", seed)
        assert len(got) == 6 and {0.4, 0.45} <= got
    # 0.2 and 0.3 are not always both chosen: they share a bin with 3 others
    assert any(not {0.2, 0.3} <= _pick("reference", s) for s in range(8))


def test_paper_bins_split_zero_to_half_evenly():
    # bins [0, 1/6): 0, .05, .1 (2 drawn); [1/6, 1/3): .2, .3; [1/3, .5): .4, .45 (both all)
    for seed in range(8):
        got = _pick("paper", seed)
        assert {0.2, 0.3, 0.4, 0.45} <= got and len(got & {0.0, 0.05, 0.1}) == 2


def test_iou_balanced_neg_fills_a_short_bin_at_random_and_keeps_few_negatives_whole():
    bg = torch.arange(6)
    iou = torch.tensor([0.01, 0.02, 0.03, 0.04, 0.05, 0.9])  # all but one in the first bin
    got = iou_balanced_neg(bg, iou, 4, 1.0, 2, torch.Generator()).tolist()
    assert len(got) == 4 and 5 in got  # bin [.5, 1) gives its one, bin [0, .5) 2, then 1 more
    assert iou_balanced_neg(bg, iou, 6, 1.0, 3, torch.Generator()).tolist() == list(range(6))


def test_instance_balanced_pos_quota_per_ground_truth():
    # 10 positives: 8 of box 0, 1 each of boxes 1 and 2; quota 6 -> int(round(6/3) + 1) = 3 per
    # box: 3 + 1 + 1 = 5, one more at random from box 0's other 5 -> 4 of box 0
    fg = torch.arange(10)
    gt = torch.tensor([0] * 8 + [1, 2])
    for seed in range(5):
        got = instance_balanced_pos(fg, gt, 6, torch.Generator().manual_seed(seed)).tolist()
        assert len(set(got)) == 6 and {8, 9} <= set(got)
        assert sum(1 for i in got if i < 8) == 4
    # quota 4 over 3 boxes: int(round(4/3) + 1) = 2 per box -> 2 + 1 + 1 = 4 exactly
    got = instance_balanced_pos(fg, gt, 4, torch.Generator()).tolist()
    assert {8, 9} <= set(got) and len(got) == 4
    assert instance_balanced_pos(fg[:3], gt[:3], 4, torch.Generator()).tolist() == [0, 1, 2]


def test_unknown_bin_mode_is_one_line():
    with pytest.raises(UserError, match="sampler.libra_bins"):
        build_sampler(SamplerConfig(name="libra", libra_bins="even"))


def _floor_image():
    # 20 negatives of IoU exactly 0, 10 of IoU in (0, 0.5), then 2 positives (one a gt box)
    iou = [0.0] * 20 + [0.05 * k for k in range(1, 11)] + [0.7, 1.0]
    return _rois([0] * 30 + [1, 1], iou, [0] * 32)


def test_iou_zero_negatives_leave_the_draw_after_the_first_call():
    # mmdetection's IoUBalancedNegSampler: floor_thr -1 on the first call (every negative in
    # the balanced draw), then 0: the IoU-0 negatives only fill what the others leave short.
    first_had_zero = False
    for seed in range(6):
        sampler = build_sampler(SamplerConfig(name="libra"))
        gen = torch.Generator().manual_seed(seed)
        image = _floor_image()
        assert sampler.state_dict() == {"floor_thr": -1.0}
        first = sampler.select(image, None, 8, gen)
        first_had_zero |= bool((image.max_iou[first[image.labels[first] == 0]] == 0).any())
        assert sampler.state_dict() == {"floor_thr": 0.0}
        for _ in range(5):
            later = sampler.select(image, None, 8, gen)
            negatives = later[image.labels[later] == 0]
            assert len(negatives) == 6 and bool((image.max_iou[negatives] > 0).all())
    assert first_had_zero  # 20 of 30 negatives have IoU 0: the first draw takes some


def test_iou_zero_negatives_fill_what_the_others_leave_short():
    sampler = build_sampler(SamplerConfig(name="libra"))
    sampler.load_state_dict({"floor_thr": 0.0})  # as after a first call (and a resume)
    image = _floor_image()
    chosen = sampler.select(image, None, 64, torch.Generator().manual_seed(0))
    negatives = chosen[image.labels[chosen] == 0]
    # 62 wanted, 30 exist: every one of them (the 10 of IoU > 0 and the 20 of IoU 0)
    assert sorted(negatives.tolist()) == list(range(30))
    chosen = sampler.select(image, None, 20, torch.Generator().manual_seed(0))
    negatives = chosen[image.labels[chosen] == 0]
    # 18 wanted: all 10 of IoU > 0, and 8 of the IoU-0 ones at random
    assert set(range(20, 30)) <= set(negatives.tolist()) and len(negatives) == 18
