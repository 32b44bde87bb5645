"""Proposal recall, checked against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import torch

from ohemcli.data.voc import ImageRecord
from ohemcli.evaluation.proposal_recall import ProposalRecall, scored_gt


def test_recall_counts_the_objects_covered_by_the_first_n_proposals():
    recall = ProposalRecall(tops=(1, 2), ious=(0.5, 0.7))
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    proposals = torch.tensor(
        [
            [0.0, 0.0, 10.0, 6.0],  # IoU 0.6 with the first object
            [20.0, 20.0, 30.0, 30.0],  # IoU 1 with the second
        ]
    )
    recall.add(proposals, gt)
    recall.add(torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 5.0, 5.0]]))  # nothing offered
    recall.add(proposals, torch.zeros(0, 4))  # no object: counts for nothing
    out = recall.result()
    # 3 objects: the first proposal covers one at 0.5 and none at 0.7; both cover 2 at 0.5, 1 at 0.7
    assert out["1@0.5"] == 1 / 3 and out["1@0.7"] == 0.0
    assert out["2@0.5"] == 2 / 3 and out["2@0.7"] == 1 / 3
    assert out["mean_proposals"] == 4 / 3


def test_difficult_objects_do_not_count():
    record = ImageRecord(
        image_id="a",
        image_path=None,  # type: ignore[arg-type]
        width=50,
        height=50,
        boxes=np.array([[0, 0, 9, 9], [10, 10, 19, 19]], np.float32),
        labels=np.array([1, 1]),
        difficult=np.array([False, True]),
    )
    assert scored_gt(record).tolist() == [[0.0, 0.0, 9.0, 9.0]]
