"""faster-rcnn's candidate RoIs: the RPN's proposals, the ground truth and hnm's pooled boxes,
scored in the step as the data loader scores fixed proposals."""

from __future__ import annotations

import torch

from ohemcli.boxes import BoxNorm, encode
from ohemcli.data.batching import ImageSample
from ohemcli.engine.candidates import scored_proposals


def _sample(flipped: bool = False) -> ImageSample:
    return ImageSample(
        image=torch.zeros(3, 100, 200),
        rois=torch.zeros(0, 4),
        image_id="a",
        factor=2.0,
        gt_boxes=torch.tensor([[10.0, 10.0, 50.0, 50.0]]),  # input coordinates
        gt_labels=torch.tensor([3]),
        crowd_boxes=torch.tensor([[150.0, 0.0, 199.0, 99.0]]),
        flipped=flipped,
        width=100,
    )


def test_proposals_then_ground_truth_then_pooled_boxes_labelled_by_iou():
    proposals = torch.tensor(
        [
            [10.0, 10.0, 50.0, 46.0],  # IoU 0.9 with the object: class 3
            [60.0, 60.0, 90.0, 90.0],  # background
            [160.0, 10.0, 190.0, 40.0],  # inside the crowd region: left out
        ]
    )
    extra = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # original coordinates, unflipped
    rois = scored_proposals(_sample(), proposals, 0.5, BoxNorm.fixed(3), extra)
    assert rois.boxes.tolist() == [
        [10.0, 10.0, 50.0, 46.0],
        [60.0, 60.0, 90.0, 90.0],
        [10.0, 10.0, 50.0, 50.0],  # the ground truth
        [0.0, 0.0, 20.0, 20.0],  # the pooled box, resized by the factor 2
    ]
    assert rois.labels.tolist() == [3, 0, 3, 0]
    assert torch.allclose(rois.max_iou[:3], torch.tensor([0.9, 0.0, 1.0]))
    expected = encode(proposals[:1], torch.tensor([[10.0, 10.0, 50.0, 50.0]]))[0]
    assert torch.allclose(rois.box_targets[0], expected)
    assert rois.box_targets[1].abs().sum() == 0 and rois.gt_index.tolist()[0] == 0


def test_a_pooled_box_is_mirrored_with_its_image():
    extra = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    rois = scored_proposals(_sample(flipped=True), torch.zeros(0, 4), 0.5, BoxNorm.fixed(3), extra)
    # mirrored in the 100-px original (x' = 99 - x), then resized by 2
    assert rois.boxes[-1].tolist() == [178.0, 0.0, 198.0, 20.0]
