"""Test images loaded ahead in threads of the evaluating process.

Evaluation takes one image at a time, in order. DataLoader worker processes hand each image back
through shared memory and a socket, which cost about as much as decoding the image (3 ms of a
36 ms synth_tiny test image, measured with cProfile); a thread hands it back for free, and decoding
(OpenCV) and the model (torch) both release the GIL, so the two still overlap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from torch.utils.data import Dataset

from ohemcli.data.batching import Batch, ImageSample, collate


def loaded_ahead(images: Dataset[ImageSample], threads: int) -> Iterator[Batch]:
    """One-image batches of ``images`` in order, each loaded by one of ``threads`` threads while
    the caller works on the ones before it (two per thread ahead); ``threads`` 0 loads each in
    the caller's thread when it is asked for."""
    count = len(images)  # type: ignore[arg-type]  # torch's Dataset declares no __len__

    def batch(i: int) -> Batch:
        return collate([images[i]])

    if threads <= 0:
        yield from map(batch, range(count))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ohem-load") as pool:
        pending: deque[Future[Batch]] = deque()
        for i in range(count):
            pending.append(pool.submit(batch, i))
            if len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
