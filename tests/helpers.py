"""Small VOC roots built inside tests, and the settings that size a tiny model for them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` meanwhile, then put back (CPU runs match
    bit for bit only at equal thread counts)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_synth_settings(root: Path) -> dict[str, object]:
    """Config overrides for the ``small_synth`` root: small images, 150 proposals, no loader
    workers, the tiny backbone."""
    return {
        "data.root": str(root),
        "data.scale": 160,
        "data.max_size": 220,
        "data.max_proposals": 150,
        "data.workers": 0,
        "model.backbone": "tiny",
    }


def tiny_voc_root(tmp: Path, num_images: int = 2, classes: tuple[str, ...] = ("thing",)) -> Path:
    """A VOC root of 64x64 images, each with one object at 1-based (11, 11)-(30, 30)."""
    root = tmp / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"im{i:03d}" for i in range(num_images)]
    for i, image_id in enumerate(ids):
        image = np.full((64, 64, 3), 40 + 10 * i, np.uint8)
        image[10:30, 10:30] = 220
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image)
        name = classes[i % len(classes)]
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>64</width><height>64</height>"
            f"<depth>3</depth></size><object><name>{name}</name><difficult>0</difficult><bndbox>"
            "<xmin>11</xmin><ymin>11</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>"
        )
    for split in ("trainval", "test"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root
