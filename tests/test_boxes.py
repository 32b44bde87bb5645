"""The one numpy IoU: both pixel conventions, broadcasting, and disjoint boxes."""

import numpy as np
import pytest

from ohemcli.boxes import iou_np


def test_continuous_widths():
    # 10x10 and 10x10 overlapping in a 5x10 strip: 50 / (100 + 100 - 50)
    assert iou_np(np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0])) == pytest.approx(1 / 3)


def test_devkit_widths_add_one_pixel():
    # 11x11 boxes overlapping in 6x11: 66 / (121 + 121 - 66)
    iou = iou_np(np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0]), plus_one=True)
    assert iou == pytest.approx(66 / 176)


def test_one_box_against_many_and_disjoint_boxes():
    many = np.array([[0, 0, 10, 10.0], [20, 20, 30, 30.0], [0, 0, 5, 10.0]])
    assert iou_np(np.array([0, 0, 10, 10.0]), many).tolist() == [1.0, 0.0, 0.5]
