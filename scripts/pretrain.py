"""Pretraining of the tiny backbone on crops of the synthetic shapes (``ohemcli/weights``).

Fast R-CNN starts from a network pretrained on ImageNet classification; the tiny backbone's
counterpart is a 7-way classifier (the six synthetic classes + background) trained on crops cut
from synthetic images of a *different generator seed* than the data set of ``--data synth``
(:data:`PRETRAIN_SEED`), so no demo train or test image is ever seen. Object crops are the
annotated, non-difficult boxes, jittered; background crops are random boxes that overlap no object
by IoU 0.3 or more, so they hold clutter, distractors and fragments. Each crop (with a little
context) is resized to ``roi_size * stride`` pixels, which the trunk maps to exactly the
``roi_size x roi_size`` grid that RoI pooling gives the head, so the head is pretrained too.

Everything draws from generators seeded by ``seed``, so on one machine (and thread count) two runs
give identical tensors. ``scripts/pretrain_tiny.py`` writes the shipped file.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from ohemcli.boxes import iou_np
from ohemcli.config import ModelConfig
from ohemcli.data.batching import image_tensor
from ohemcli.data.synthetic.generate import SYNTH_CLASSES, render_image
from ohemcli.model.backbones import build_tiny
from ohemcli.progress import make_progress

PRETRAIN_SEED = 1000  # generator seed of the pretraining images; the demo set uses seed 0
CONTEXT = 0.1  # context added around each crop, as a fraction of its width/height


@dataclass(frozen=True)
class PretrainConfig:
    # 3000 images x 12 epochs (about 7 min on one CPU thread) against 800 x 5: crop accuracy
    # 0.997 against 0.871, and the demo's fixed sampler at 400 iterations 0.627 mAP against 0.411
    images: int = 3000  # synthetic images to cut crops from
    bg_per_image: int = 3  # background crops per image
    epochs: int = 12  # passes over the crops
    batch: int = 128  # crops per SGD step
    lr: float = 0.05  # peak learning rate (cosine decay to 0)
    seed: int = 0  # seed of the crops' jitter, flips, order and initial weights
    data_seed: int = PRETRAIN_SEED  # generator seed of the synthetic images


def _jitter(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift and rescale a box by up to 10 % of its size (proposals are never exact)."""
    w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
    dx, dy, dw, dh = rng.uniform(-0.1, 0.1, 4)
    cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * h
    w, h = w * np.exp(dw), h * np.exp(dh)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _random_background(gt: np.ndarray, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """A random box (16-150 px, aspect 1:2 to 2:1) with IoU < 0.3 against every object."""
    h_img, w_img = shape[:2]
    box = np.array([0.0, 0.0, 15.0, 15.0])
    for _ in range(50):
        s, a = np.exp(rng.uniform(np.log(16), np.log(150))), np.exp(rng.uniform(-0.7, 0.7))
        w, h = min(s * np.sqrt(a), w_img), min(s / np.sqrt(a), h_img)
        x, y = rng.uniform(0, w_img - w), rng.uniform(0, h_img - h)
        box = np.array([x, y, x + w - 1, y + h - 1])
        if len(gt) == 0 or iou_np(box, gt, plus_one=True).max() < 0.3:
            break
    return box


def _crop(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The box plus context, resized to ``size x size`` (pixels outside the image are black)."""
    w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
    x1, y1 = box[0] - CONTEXT * w, box[1] - CONTEXT * h
    x2, y2 = box[2] + CONTEXT * w, box[3] + CONTEXT * h
    # an affine warp maps the box (with context) onto the output square, sub-pixel exact
    m = np.array([[size / (x2 - x1 + 1), 0, 0], [0, size / (y2 - y1 + 1), 0]], np.float64)
    m[:, 2] = -m[:, :2] @ np.array([x1, y1])
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR)


def make_crops(cfg: PretrainConfig, size: int, show_progress: bool = False) -> tuple:
    """Crops (N, size, size, 3) uint8 RGB and labels (N,) in 0..6 (0 = background)."""
    rng = np.random.default_rng([cfg.seed, 1])
    crops, labels = [], []
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("pretraining crops", total=cfg.images)
        for i in range(cfg.images):
            bgr, objects = render_image(cfg.data_seed, i)
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            gt = np.array([o["box"] for o in objects], np.float64).reshape(-1, 4)
            for o in objects:
                if not o["difficult"]:
                    crops.append(_crop(rgb, _jitter(np.array(o["box"], float), rng), size))
                    labels.append(SYNTH_CLASSES.index(o["name"]) + 1)
            for _ in range(cfg.bg_per_image):
                crops.append(_crop(rgb, _random_background(gt, rgb.shape, rng), size))
                labels.append(0)
            progress.advance(task)
    return np.stack(crops), np.array(labels, np.int64)


def pretrain_tiny(
    cfg: PretrainConfig, model_cfg: ModelConfig | None = None, show_progress: bool = False
) -> tuple[dict[str, torch.Tensor], float]:
    """Train the tiny trunk + head as a crop classifier.

    Returns the backbone's state dict (keys ``trunk.*`` and ``head.*``, what
    ``model.pretrained`` loads) and the classifier's accuracy on its last epoch's crops.
    """
    model_cfg = model_cfg or ModelConfig(backbone="tiny")
    size = model_cfg.roi_size * 8  # the tiny trunk has stride 8
    crops, labels = make_crops(cfg, size, show_progress)
    torch.manual_seed(cfg.seed)
    backbone = build_tiny(model_cfg)
    net = nn.Sequential(
        backbone.trunk, backbone.head, nn.Linear(backbone.out_dim, len(SYNTH_CLASSES) + 1)
    )
    x = torch.stack([image_tensor(c, 1.0, flip=False) for c in crops])
    y = torch.from_numpy(labels)
    steps = cfg.epochs * ((len(y) + cfg.batch - 1) // cfg.batch)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    correct = 0
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("pretraining", total=steps)
        for _ in range(cfg.epochs):
            correct = 0
            order = torch.randperm(len(y), generator=gen)
            for start in range(0, len(y), cfg.batch):
                idx = order[start : start + cfg.batch]
                xb = x[idx]
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
                logits = net(xb)
                loss = nn.functional.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                correct += int((logits.argmax(1) == y[idx]).sum())
                progress.advance(task)
    state = {f"trunk.{k}": v for k, v in backbone.trunk.state_dict().items()}
    state.update({f"head.{k}": v for k, v in backbone.head.state_dict().items()})
    return state, correct / len(y)
