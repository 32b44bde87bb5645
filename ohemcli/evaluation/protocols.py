"""The ``fast-rcnn`` test protocol: Fast R-CNN's adaptive per-class thresholds over a test set.

rbgirshick/fast-rcnn's ``lib/fast_rcnn/test.py`` as released (``test_net``; later versions
switched to 100 detections per image over 0.05, our ``default``), which tested the baseline the
OHEM paper compares with. Over the images in order, for each class ``j``:

1. keep the detections scoring above ``thresh[j]`` (at first -inf), at most the 100 highest;
2. push their scores on a min-heap of class ``j``; once it holds more than ``max_per_set = 40 *
   num_images`` scores, pop the lowest down to ``max_per_set`` and set ``thresh[j]`` to the
   heap's minimum;

then, after the last image, drop every kept detection not scoring above its class's final
``thresh`` and run NMS per (image, class). On average about 40 detections per class per image
survive, before NMS; there is no per-image cap over all classes.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import nms

from ohemcli.config import FAST_RCNN_MAX_PER_IMAGE, FAST_RCNN_PER_CLASS


@dataclass
class FastRCNNTest:
    """The state of the protocol over one pass of a test set (see the module docstring)."""

    num_images: int
    per_class: int = FAST_RCNN_PER_CLASS  # average kept per class per image (40)
    max_per_image: int = FAST_RCNN_MAX_PER_IMAGE  # most kept per class per image (100)
    thresh: dict[int, float] = field(default_factory=dict)  # class -> threshold (absent: -inf)
    heaps: dict[int, list[float]] = field(default_factory=dict)
    kept: list[tuple[int, int, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def max_per_set(self) -> int:
        return self.per_class * self.num_images

    def add(self, image: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        """One image's candidate detections (``labels`` 1..K), in test-set order."""
        for label in np.unique(labels):
            j = int(label)
            s, b = scores[labels == label], boxes[labels == label]
            above = s > self.thresh.get(j, -math.inf)
            s, b = s[above], b[above]
            top = np.argsort(-s, kind="stable")[: self.max_per_image]
            s, b = s[top], b[top]
            heap = self.heaps.setdefault(j, [])
            for value in s.tolist():
                heapq.heappush(heap, value)
            if len(heap) > self.max_per_set:
                while len(heap) > self.max_per_set:
                    heapq.heappop(heap)
                self.thresh[j] = heap[0]
            self.kept.append((image, j, b, s))

    def finish(self, nms_iou: float) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(image, class, boxes, scores)`` above the final thresholds, after NMS (``nms_iou``)."""
        out = []
        for image, j, b, s in self.kept:
            above = s > self.thresh.get(j, -math.inf)
            b, s = b[above], s[above]
            if len(s):
                keep = nms(torch.from_numpy(b).float(), torch.from_numpy(s).float(), nms_iou)
                b, s = b[keep.numpy()], s[keep.numpy()]
            out.append((image, j, b, s))
        return out
