"""Mini-batch building: resize, flip, RoI targets, a resumable image schedule, and collate.

The image order and the flips are a pure function of (seed, iteration), so a resumed run sees
exactly the batches an uninterrupted one would, and every sampler of a comparison sees the same
images in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from ohemcli.boxes import BoxNorm
from ohemcli.data.coco.dataset import crowd_mask
from ohemcli.data.dataset import Dataset
from ohemcli.data.targets import assign_targets, outside_crowd
from ohemcli.data.voc import ImageRecord, load_image

PIXEL_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as torchvision's weights expect (RGB)
PIXEL_STD = (0.229, 0.224, 0.225)
# Caffe's VGG16 (the OHEM release's fast_rcnn/config.py PIXEL_MEANS): the mean pixel in B, G, R
# order on the 0-255 scale, no std.
CAFFE_PIXEL_MEAN_BGR = (102.9801, 115.9465, 122.7717)


def resize_factor(height: int, width: int, scale: int, max_size: int) -> float:
    """Factor that brings the shorter side to ``scale`` without the longer passing ``max_size``."""
    factor = scale / min(height, width)
    if round(factor * max(height, width)) > max_size:
        factor = max_size / max(height, width)
    return factor


def normalise(image: np.ndarray, norm: str) -> Tensor:
    """RGB uint8 (H, W, 3) -> float (3, H, W) as the weights of ``model.input_norm`` expect.

    ``torchvision``: RGB scaled to 0-1, minus the ImageNet mean, over its std. ``caffe``: the
    channels reversed to BGR, 0-255, minus :data:`CAFFE_PIXEL_MEAN_BGR` (no std).
    """
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if norm == "caffe":
        return t.flip(0) - torch.tensor(CAFFE_PIXEL_MEAN_BGR).view(3, 1, 1)
    if norm != "torchvision":
        raise ValueError(f"unknown input normalisation {norm!r}")
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    return (t.div_(255.0) - mean) / std


def image_tensor(image: np.ndarray, factor: float, flip: bool, norm: str = "torchvision") -> Tensor:
    """RGB uint8 (H, W, 3) -> normalised float (3, H', W'), resized and optionally mirrored."""
    if factor != 1.0:
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    if flip:
        image = image[:, ::-1]
    return normalise(image, norm)


def flip_boxes(boxes: Tensor, width: float) -> Tensor:
    """Mirror boxes in an image ``width`` pixels wide, as the image's columns are mirrored.

    Boxes are 0-based inclusive pixel indices (VOC's corners minus 1): a box ``[x1, x2]`` covers
    columns ``x1`` to ``x2``, and mirroring sends column ``c`` to ``width - 1 - c``. Hence
    ``x1' = width - 1 - x2`` and ``x2' = width - 1 - x1``, the release's rule (py-faster-rcnn
    ``roidb.append_flipped_images``). Box coding (``boxes.py``) measures widths as ``x2 - x1``;
    any mirror ``a - x`` only negates a box's ``dx`` target under it, so the two agree.
    """
    flipped = boxes.clone()
    flipped[:, 0] = width - 1 - boxes[:, 2]
    flipped[:, 2] = width - 1 - boxes[:, 0]
    return flipped


def training_gt(record: ImageRecord, use_difficult: bool) -> tuple[Tensor, Tensor]:
    """Ground truth used as training targets (difficult objects left out by default, crowd
    regions always)."""
    keep = np.ones(len(record.labels), bool) if use_difficult else ~record.difficult
    keep &= ~crowd_mask(record)
    return torch.from_numpy(record.boxes[keep]), torch.from_numpy(record.labels[keep])


def crowd_boxes(record: ImageRecord) -> Tensor:
    """The image's crowd regions (C, 4), original coordinates (none for VOC)."""
    return torch.from_numpy(record.boxes[crowd_mask(record)]).float().reshape(-1, 4)


def image_proposals(proposals: dict[str, np.ndarray] | None, image_id: str) -> Tensor:
    """One image's proposals (R, 4) in original-image coordinates; none (0, 4) when the run
    has no fixed proposals (``proposals`` None: faster-rcnn's come from its RPN)."""
    if proposals is None:
        return torch.zeros(0, 4)
    return torch.from_numpy(proposals[image_id]).float().reshape(-1, 4)


@dataclass
class ImageSample:
    """One image ready for the network, with every RoI and (in training) its targets."""

    image: Tensor  # (3, H, W)
    rois: Tensor  # (R, 4) in resized-image coordinates
    image_id: str
    factor: float  # resize factor applied to the original image
    labels: Tensor | None = None
    max_iou: Tensor | None = None
    box_targets: Tensor | None = None
    gt_index: Tensor | None = None  # per RoI, its ground-truth box of highest IoU (libra, pisa)
    # Training: the ground truth the RoIs were scored against and the crowd regions, in the same
    # (resized, mirrored) coordinates: faster-rcnn scores its RPN's proposals in the step.
    gt_boxes: Tensor | None = None  # (G, 4)
    gt_labels: Tensor | None = None  # (G,) int64 in 1..K
    crowd_boxes: Tensor | None = None  # (C, 4); proposals inside one are left out
    flipped: bool = False
    width: int = 0  # the original image's width (mirrors boxes given in its coordinates)


class TrainImages(TorchDataset):
    """Training images indexed by ``(image index, flip)``.

    Each image's RoIs are its proposals followed by its training ground-truth boxes; the order is
    fixed, so a RoI's position identifies it across epochs (hnm's false-positive pool relies on it).
    """

    def __init__(
        self,
        dataset: Dataset,
        proposals: dict[str, np.ndarray] | None,
        scale: int,
        max_size: int,
        use_difficult: bool = False,
        fg_thresh: float = 0.5,
        box_norm: BoxNorm | None = None,
        input_norm: str = "torchvision",
    ) -> None:
        self.dataset, self.proposals = dataset, proposals
        self.input_norm = input_norm  # model.input_norm: the normalisation the weights expect
        self.scale, self.max_size = scale, max_size
        self.use_difficult, self.fg_thresh = use_difficult, fg_thresh
        self.box_norm = box_norm or BoxNorm.fixed(dataset.num_classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def image_rois(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """Original-image RoIs (proposals, then ground truth) and the ground truth to score them.

        Proposals inside a crowd region (``outside_crowd``) are left out: no sampler can choose
        them, as foreground or background. Which are left out depends on the image only, so a
        RoI's position stays its identity across epochs and flips.
        """
        record = self.dataset[index]
        gt_boxes, gt_labels = training_gt(record, self.use_difficult)
        props = image_proposals(self.proposals, record.image_id)
        crowd = crowd_boxes(record)
        if len(crowd):
            props = props[outside_crowd(props, crowd)]
        return torch.cat([props, gt_boxes]), gt_boxes, gt_labels

    def __getitem__(self, key: tuple[int, bool]) -> ImageSample:
        index, flip = key
        record = self.dataset[index]
        rois, gt_boxes, gt_labels = self.image_rois(index)
        targets = assign_targets(rois, gt_boxes, gt_labels, self.fg_thresh, self.box_norm, flip)
        factor = resize_factor(record.height, record.width, self.scale, self.max_size)
        image = load_image(record.image_path, (record.width, record.height))
        crowd = crowd_boxes(record)
        if flip:  # labels and IoUs are flip-invariant; assign_targets mirrored dx
            rois = flip_boxes(rois, image.shape[1])
            width = image.shape[1]
            gt_boxes, crowd = flip_boxes(gt_boxes, width), flip_boxes(crowd, width)
        return ImageSample(
            image=image_tensor(image, factor, flip, self.input_norm),
            rois=rois * factor,
            image_id=record.image_id,
            factor=factor,
            labels=targets.labels,
            max_iou=targets.max_iou,
            box_targets=targets.box_targets,
            gt_index=targets.gt_index,
            gt_boxes=gt_boxes.float() * factor,
            gt_labels=gt_labels,
            crowd_boxes=crowd * factor,
            flipped=flip,
            width=record.width,
        )


class TestImages(TorchDataset):
    """Test images, one at a time, with their proposals scaled to the network's input."""

    def __init__(
        self,
        dataset: Dataset,
        proposals: dict[str, np.ndarray] | None,
        scale: int,
        max_size: int,
        input_norm: str = "torchvision",
    ):
        self.dataset, self.proposals = dataset, proposals
        self.scale, self.max_size = scale, max_size
        self.input_norm = input_norm  # model.input_norm of the run being evaluated

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> ImageSample:
        record = self.dataset[index]
        factor = resize_factor(record.height, record.width, self.scale, self.max_size)
        props = image_proposals(self.proposals, record.image_id)
        image = load_image(record.image_path, (record.width, record.height))
        return ImageSample(
            image_tensor(image, factor, False, self.input_norm),
            props * factor,
            record.image_id,
            factor,
        )


def epoch_order(num_images: int, seed: int, epoch: int, flip: bool) -> list[tuple[int, bool]]:
    """The shuffled ``(index, flip)`` list of one epoch, a pure function of its arguments."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_images, generator=gen).tolist()
    flips = (torch.rand(num_images, generator=gen) < 0.5).tolist() if flip else [False] * num_images
    return [(i, bool(f)) for i, f in zip(order, flips, strict=True)]


class ScheduleSampler(Sampler[list[tuple[int, bool]]]):
    """Batch sampler: the images of iterations ``start_iter .. iters - 1``, N per iteration.

    Iteration ``t`` takes positions ``t*N*W + r*N ...`` of the concatenated epoch orders, where
    ``W`` is the number of distributed ranks and ``r`` this rank.
    """

    def __init__(
        self, num_images: int, images_per_batch: int, seed: int, start_iter: int, iters: int,
        flip: bool, rank: int = 0, world_size: int = 1,
    ) -> None:  # fmt: skip
        self.num_images, self.n, self.seed = num_images, images_per_batch, seed
        self.start_iter, self.iters, self.flip = start_iter, iters, flip
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.iters - self.start_iter)

    def _position(self, pos: int, cache: dict[int, list[tuple[int, bool]]]) -> tuple[int, bool]:
        epoch, offset = divmod(pos, self.num_images)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_order(self.num_images, self.seed, epoch, self.flip)
        return cache[epoch][offset]

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        cache: dict[int, list[tuple[int, bool]]] = {}
        per_iter = self.n * self.world_size
        for t in range(self.start_iter, self.iters):
            base = t * per_iter + self.rank * self.n
            yield [self._position(base + k, cache) for k in range(self.n)]


def iteration_epoch(iteration: int, num_images: int, images_per_iter: int) -> int:
    """The epoch that iteration ``iteration`` (0-based) draws its first image from."""
    return iteration * images_per_iter // num_images


@dataclass
class Batch:
    """N images padded into one tensor, with per-image RoIs and targets."""

    images: Tensor  # (N, 3, H, W), zero padded at the bottom and right
    samples: list[ImageSample]

    def to(self, device: torch.device) -> Batch:
        """Move every tensor to ``device`` (each sample's image already lives in ``images``)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        moved = [
            replace(s, rois=s.rois.to(device), labels=move(s.labels), max_iou=move(s.max_iou),
                    box_targets=move(s.box_targets), gt_index=move(s.gt_index),
                    gt_boxes=move(s.gt_boxes), gt_labels=move(s.gt_labels),
                    crowd_boxes=move(s.crowd_boxes))
            for s in self.samples
        ]  # fmt: skip
        return Batch(self.images.to(device, non_blocking=True), moved)

    def pin_memory(self) -> Batch:
        """Every tensor in page-locked memory, so that :meth:`to` copies to a GPU without
        blocking; the DataLoader calls this (``pin_memory=True``) in its pinning thread."""

        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        pinned = [
            replace(s, rois=s.rois.pin_memory(), labels=pin(s.labels), max_iou=pin(s.max_iou),
                    box_targets=pin(s.box_targets), gt_index=pin(s.gt_index),
                    gt_boxes=pin(s.gt_boxes), gt_labels=pin(s.gt_labels),
                    crowd_boxes=pin(s.crowd_boxes))
            for s in self.samples
        ]  # fmt: skip
        return Batch(self.images.pin_memory(), pinned)


def collate(samples: list[ImageSample]) -> Batch:
    """Pad the images of a batch to a common size (padding never overlaps a RoI)."""
    if len(samples) == 1:  # nothing to pad (a fresh zeroed copy costs ms on a CPU)
        return Batch(samples[0].image.unsqueeze(0), samples)
    height = max(s.image.shape[1] for s in samples)
    width = max(s.image.shape[2] for s in samples)
    images = torch.zeros(len(samples), 3, height, width)
    for i, s in enumerate(samples):
        images[i, :, : s.image.shape[1], : s.image.shape[2]] = s.image
    return Batch(images, samples)
