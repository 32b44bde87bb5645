"""What does one training pass cost on the CPU with the tiny backbone and with resnet18?

    OMP_NUM_THREADS=1 python benchmarks/backbone_cost.py [--repeats 5] [--all-rois 0]

Side by side in one process, one thread, random weights (no download), the ``bccd_tiny`` preset's
sizes: a batch of ``train.images_per_batch`` BCCD images (640x480, resized by ``data.scale`` and
``data.max_size``) with ``sampler.batch_rois`` RoIs, BCCD's 3 classes. One pass is what a training
iteration computes: the trunk, RoI pooling, the head, the per-RoI loss and backward through every
trainable layer; its RoI-head part is the same pass on features already computed (pooling, head,
loss and their backward). With ``--all-rois R`` it also times ohem's read-only pass over R RoIs
(the head under ``torch.no_grad()``; bccd_tiny keeps up to 1,000 proposals per image, and the
cost grows in proportion to R). Prints the median of ``--repeats`` timed passes after one warm-up
pass, in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ohemcli.config import ModelConfig
from ohemcli.data.batching import resize_factor
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.presets import load_preset

BCCD_HEIGHT, BCCD_WIDTH, BCCD_CLASSES = 480, 640, 3
BACKBONES = ("tiny", "resnet18")


def _random_rois(count: int, images: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` boxes of 16 to 96 px spread over ``images`` images, with the image index first."""
    per_image = []
    for i in range(images):
        n = count // images + (i < count % images)
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w - 96.0, h - 96.0])
        wh = torch.rand(n, 2, generator=gen) * 80 + 16
        per_image.append(torch.cat([xy, xy + wh], dim=1))
    return rois_with_batch_index(per_image)


def _median_seconds(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up: first-call allocations and kernel choice
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Time each backbone and print one line per backbone and pass."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per figure")
    parser.add_argument(
        "--all-rois", type=int, default=0, help="also time a read-only pass over this many RoIs"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_preset("bccd_tiny")
    factor = resize_factor(BCCD_HEIGHT, BCCD_WIDTH, cfg.data.scale, cfg.data.max_size)
    h, w = round(BCCD_HEIGHT * factor), round(BCCD_WIDTH * factor)
    n, rois_per_batch = cfg.train.images_per_batch, cfg.sampler.batch_rois
    print(f"{n} images of {w}x{h}, {rois_per_batch} RoIs, one thread, random weights")
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, h, w, generator=gen)
    rois = _random_rois(rois_per_batch, n, h, w, gen)
    labels = torch.randint(0, BCCD_CLASSES + 1, (len(rois),), generator=gen)
    targets = torch.randn(len(rois), 4, generator=gen) * (labels > 0).unsqueeze(1)
    all_rois = _random_rois(args.all_rois, n, h, w, gen) if args.all_rois else None
    for name in BACKBONES:
        torch.manual_seed(0)
        model_cfg = ModelConfig(backbone=name, pretrained=False, roi_size=cfg.model.roi_size)
        model = FastRCNN(model_cfg, BCCD_CLASSES).train()

        def train_pass(model: FastRCNN = model) -> None:
            model.zero_grad(set_to_none=True)
            losses = model.roi_losses(model.features(images), rois, labels, targets)
            (losses.cls + losses.box).mean().backward()

        with torch.no_grad():
            features = model.features(images)

        def head_pass(model: FastRCNN = model, features: torch.Tensor = features) -> None:
            model.zero_grad(set_to_none=True)
            losses = model.roi_losses(features, rois, labels, targets)
            (losses.cls + losses.box).mean().backward()

        whole = _median_seconds(train_pass, args.repeats)
        head = _median_seconds(head_pass, args.repeats)
        print(f"{name:>9}: forward+backward {whole:.3f} s, of which RoI head {head:.3f} s")
        if all_rois is not None:

            def read_only(model: FastRCNN = model, features: torch.Tensor = features) -> None:
                with torch.no_grad():
                    model.roi_forward(features, all_rois)

            seconds = _median_seconds(read_only, args.repeats)
            print(f"{name:>9}: read-only head over {len(all_rois)} RoIs {seconds:.3f} s")


if __name__ == "__main__":
    main()
