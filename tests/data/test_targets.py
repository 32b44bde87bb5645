"""RoI target assignment on hand-built boxes."""

import torch

from ohemcli.data.targets import assign_targets


def test_labels_max_iou_and_targets():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    gt_labels = torch.tensor([3, 1])
    rois = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # identical to gt 0: IoU 1
            [0.0, 0.0, 10.0, 5.0],  # half of gt 0: IoU 0.5 -> foreground (>= 0.5)
            [0.0, 0.0, 10.0, 4.0],  # IoU 0.4 -> background
            [100.0, 100.0, 110.0, 110.0],  # no overlap
            [20.0, 20.0, 40.0, 30.0],  # half of gt 1: IoU 0.5
        ]
    )
    t = assign_targets(rois, gt, gt_labels, fg_thresh=0.5)
    assert t.labels.tolist() == [3, 3, 0, 0, 1]
    assert torch.allclose(t.max_iou, torch.tensor([1.0, 0.5, 0.4, 0.0, 0.5]))
    assert torch.all(t.box_targets[0] == 0)  # exact match: zero deltas
    assert torch.all(t.box_targets[2:4] == 0)  # background: zero target
    # RoI 1: centre y 2.5 -> 5 over height 5: dy = 0.5 / 0.1 = 5; dh = log(10/5) / 0.2
    assert torch.allclose(t.box_targets[1], torch.tensor([0.0, 5.0, 0.0, 3.4657359]), atol=1e-5)


def test_image_without_ground_truth_is_all_background():
    t = assign_targets(torch.rand(4, 4) * 10, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert t.labels.tolist() == [0, 0, 0, 0]
    assert torch.all(t.max_iou == 0)


def test_gt_index_names_the_box_of_highest_iou_and_minus_one_without_ground_truth():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    rois = torch.tensor([[21.0, 21.0, 30.0, 30.0], [0.0, 0.0, 9.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    t = assign_targets(rois, gt, torch.tensor([1, 2]))
    assert t.gt_index.tolist() == [1, 0, 0]  # the third overlaps nothing: argmax 0, label 0
    assert t.labels.tolist() == [2, 1, 0]
    none = assign_targets(rois, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert none.gt_index.tolist() == [-1, -1, -1]
