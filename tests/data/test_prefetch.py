"""loaded_ahead gives the test images in order, whatever the number of loading threads, and a
loading error reaches the caller."""

from __future__ import annotations

import threading

import pytest
import torch

from ohemcli.data.batching import ImageSample
from ohemcli.data.prefetch import loaded_ahead
from ohemcli.errors import UserError


class Images:
    """Image ``i`` is filled with ``i``; image ``bad`` cannot be read; records the threads."""

    def __init__(self, count: int, bad: int = -1) -> None:
        self.count, self.bad, self.threads = count, bad, set()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> ImageSample:
        self.threads.add(threading.get_ident())
        if i == self.bad:
            raise UserError(f"image{i}.jpg: cannot read image")
        return ImageSample(torch.full((3, 4, 5), float(i)), torch.zeros(0, 4), f"img{i}", 1.0)


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_every_image_once_in_order(threads):
    images = Images(11)
    batches = list(loaded_ahead(images, threads))
    assert [b.samples[0].image_id for b in batches] == [f"img{i}" for i in range(11)]
    assert [int(b.images[0, 0, 0, 0]) for b in batches] == list(range(11))
    assert all(b.images.shape == (1, 3, 4, 5) for b in batches)
    in_caller = images.threads == {threading.get_ident()}
    assert in_caller == (threads == 0)


def test_a_loading_error_reaches_the_caller_after_the_images_before_it():
    seen = []
    with pytest.raises(UserError, match="image5.jpg"):
        for batch in loaded_ahead(Images(9, bad=5), 2):
            seen.append(batch.samples[0].image_id)
    assert seen == [f"img{i}" for i in range(5)]


def test_a_batch_pins_every_tensor_it_moves(monkeypatch):
    """DataLoader(pin_memory=True) calls Batch.pin_memory: the images and every sample's RoI
    tensors come back page-locked (marked here: this machine has no CUDA to pin for)."""
    import torch

    from ohemcli.data.batching import Batch, ImageSample

    pinned = []

    def fake_pin(self):
        pinned.append(tuple(self.shape))
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    sample = ImageSample(torch.zeros(3, 4, 5), torch.zeros(2, 4), "a", 1.0, torch.zeros(2),
                         torch.zeros(2), torch.zeros(2, 4), None)  # fmt: skip
    batch = Batch(torch.zeros(1, 3, 4, 5), [sample]).pin_memory()
    assert isinstance(batch, Batch) and (1, 3, 4, 5) in pinned
    assert pinned.count((2, 4)) == 2 and pinned.count((2,)) == 2  # rois, targets; labels, iou
    assert batch.samples[0].gt_index is None
