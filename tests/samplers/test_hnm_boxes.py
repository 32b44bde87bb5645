"""hnm under faster-rcnn: a pool of boxes, since a position names no RoI from one iteration to
the next."""

from __future__ import annotations

import torch

from ohemcli.samplers.base import ImageRoIs, MinedNegatives
from ohemcli.samplers.hnm import HNMSampler


def test_the_pool_keeps_the_boxes_of_the_false_positives_and_rescores_them():
    hnm = HNMSampler(fp_thresh=0.5, pool_per_image=2, evict_thresh=0.3)
    # first pass: the RoI list has no pooled box; positions 1 and 2 are false positives
    boxes = torch.tensor([[0.0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7], [3, 3, 8, 8]])
    hnm.after_mining(
        MinedNegatives({"a": (torch.tensor([2, 1]), torch.tensor([0.9, 0.6]))}, boxes={"a": boxes})
    )
    assert hnm.pooled_boxes("a").tolist() == [[2, 2, 7, 7], [1, 1, 6, 6]]
    request = hnm.mining_request()
    assert torch.equal(request.rescore_boxes["a"], hnm.pooled_boxes("a"))
    # second pass: a new false positive at position 1 (0.7), and the list ends with the two
    # pooled boxes (rescored 0.1 and 0.8); 0.1 is under evict_thresh and leaves
    second = torch.tensor([[9.0, 9, 19, 19], [4, 4, 9, 9], [2, 2, 7, 7], [1, 1, 6, 6]])
    hnm.after_mining(
        MinedNegatives(
            {"a": (torch.tensor([1]), torch.tensor([0.7]))},
            rescored={"a": torch.tensor([0.1, 0.8])},
            boxes={"a": second},
        )
    )
    assert hnm.pooled_boxes("a").tolist() == [[1, 1, 6, 6], [4, 4, 9, 9]]
    assert hnm.pool_size == 2
    state = hnm.state_dict()
    again = HNMSampler()
    again.load_state_dict(state)
    assert torch.equal(again.pooled_boxes("a"), hnm.pooled_boxes("a"))


def test_select_prefers_the_pooled_boxes_the_step_appended_last():
    hnm = HNMSampler(fg_fraction=0.0, bg_lo=0.0)
    hnm.box_pool = {"a": (torch.zeros(3, 4), torch.ones(3))}
    n = 20  # 17 proposals and ground truth, then the 3 pooled boxes
    rois = ImageRoIs(torch.zeros(n, 4), torch.zeros(n, dtype=torch.long), torch.zeros(n),
                     torch.zeros(n, 4), "a")  # fmt: skip
    chosen = hnm.select(rois, None, 3, torch.Generator().manual_seed(0))
    assert sorted(chosen.tolist()) == [17, 18, 19]
