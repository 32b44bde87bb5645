"""Proposal recall: the share of ground-truth boxes that an image's first N proposals cover.

A sampler chooses among the proposals; an object that no proposal covers is lost to every
sampler alike. So every evaluation records, for whichever source the run used (selective search's
boxes in their file order, or the RPN's best first), the recall at 100, 300 and 1,000 proposals per
image and IoU 0.5 and 0.7, as the Faster R-CNN paper's recall-against-proposals figures count it:
a ground-truth box is covered when some proposal among the first N overlaps it at that IoU or more.
Difficult and crowd boxes do not count, as VOC's AP does not count them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from ohemcli.data.coco.dataset import crowd_mask
from ohemcli.data.voc import ImageRecord

RECALL_TOPS = (100, 300, 1000)  # proposals per image
RECALL_IOUS = (0.5, 0.7)


def recall_key(top: int, iou: float) -> str:
    """The name of one recall figure: ``"300@0.5"``."""
    return f"{top}@{iou:g}"


def scored_gt(record: ImageRecord) -> Tensor:
    """The ground-truth boxes (G, 4) that recall counts: not difficult, not crowd."""
    keep = ~record.difficult & ~crowd_mask(record)
    return torch.from_numpy(np.asarray(record.boxes[keep], dtype=np.float32)).reshape(-1, 4)


class ProposalRecall:
    """Recall of proposals over a split, added one image at a time."""

    def __init__(
        self, tops: Sequence[int] = RECALL_TOPS, ious: Sequence[float] = RECALL_IOUS
    ) -> None:
        self.tops, self.ious = tuple(tops), tuple(ious)
        self.covered = {recall_key(n, t): 0 for n in self.tops for t in self.ious}
        self.gt_boxes = 0
        self.proposals = 0  # over every image, to report the mean count offered
        self.images = 0

    def add(self, proposals: Tensor, gt: Tensor) -> None:
        """One image: its proposals (R, 4) in order (best first where they are ranked) and its
        counted ground truth (G, 4), both in the same coordinates."""
        self.images += 1
        self.proposals += len(proposals)
        if len(gt) == 0:
            return
        self.gt_boxes += len(gt)
        if len(proposals) == 0:
            return
        iou = box_iou(gt.float().cpu(), proposals[: max(self.tops)].float().cpu())  # (G, R)
        for n in self.tops:
            best = iou[:, :n].max(dim=1).values
            for t in self.ious:
                self.covered[recall_key(n, t)] += int((best >= t).sum())

    def result(self) -> dict[str, float]:
        """Recall per ``"N@IoU"`` (None-free: 0 when the split has no counted box), and the
        mean number of proposals per image (``"mean_proposals"``)."""
        out = {k: v / self.gt_boxes if self.gt_boxes else 0.0 for k, v in self.covered.items()}
        out["mean_proposals"] = self.proposals / max(1, self.images)
        return out


def split_recall(records: Sequence[ImageRecord], proposals: Mapping[str, np.ndarray]) -> dict:
    """:class:`ProposalRecall`'s figures for fixed proposals (original-image coordinates, in
    their stored order) of every image of a split (``ohem data stats --proposals``)."""
    recall = ProposalRecall()
    for record in records:
        boxes = np.asarray(proposals.get(record.image_id, np.zeros((0, 4))), dtype=np.float32)
        recall.add(torch.from_numpy(boxes).reshape(-1, 4), scored_gt(record))
    return recall.result()
