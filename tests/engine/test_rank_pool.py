"""The read-only pass that pools every RoI once (FastRCNN.rank_pool) and runs the head on the
pooled rows (head_losses) chooses the RoIs and moves the trunk exactly as the earlier path
(roi_losses over every RoI, then over the chosen), for ohem and pisa, with the head's dropout
masks drawn in the same order."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from ohemcli.config import ModelConfig, SamplerConfig
from ohemcli.data.batching import Batch, ImageSample
from ohemcli.engine.candidates import batch_image_rois
from ohemcli.engine.step import Chosen, Updater, train_step
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index
from ohemcli.model.losses import RoILosses
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import as_selection
from ohemcli.samplers.loss import batch_loss


def _sample(g: torch.Generator, n: int, h: int, w: int) -> ImageSample:
    """``n`` random RoIs on an ``h`` x ``w`` image, about a quarter foreground of 2 classes."""
    xy = torch.rand(n, 4, generator=g) * torch.tensor([w, h, w, h])
    boxes = torch.cat([torch.minimum(xy[:, :2], xy[:, 2:]), torch.maximum(xy[:, :2], xy[:, 2:])], 1)
    boxes[:, 2:] += 4.0
    max_iou = torch.rand(n, generator=g)
    labels = torch.where(max_iou >= 0.5, torch.randint(1, 3, (n,), generator=g), 0)
    return ImageSample(
        torch.rand(3, h, w, generator=g),
        boxes,
        "img",
        1.0,
        labels,
        max_iou,
        torch.randn(n, 4, generator=g) * 0.5,
        torch.randint(0, 3, (n,), generator=g),
    )


def _batch() -> Batch:
    g = torch.Generator().manual_seed(3)
    samples = [_sample(g, 70, 64, 96), _sample(g, 50, 64, 96)]
    return Batch(torch.stack([s.image for s in samples]), samples)


def _model(dropout: bool) -> FastRCNN:
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny", head_dim=32), num_classes=2)
    if dropout:  # tiny has none; vgg16's fc6/fc7 have: the masks must come out the same
        model.head = nn.Sequential(model.head, nn.Dropout(0.5))
    model.train()
    return model


class Recording:
    """The sampler's choices, as given to the step."""

    def __init__(self, sampler):
        self.sampler, self.chosen = sampler, []
        self.needs_roi_losses = sampler.needs_roi_losses
        self.needs_pred_boxes = sampler.needs_pred_boxes
        self.loss_options = sampler.loss_options

    def select(self, rois, roi_losses, num, gen):
        picked = self.sampler.select(rois, roi_losses, num, gen)
        self.chosen.append(as_selection(picked, len(rois.labels)).indices.tolist())
        return picked


def _two_poolings(model, sampler, batch, per_image, gen):
    """The path before the table (the reference): a read-only pass that pools every RoI with
    torchvision under no_grad, then a training forward that pools the chosen RoIs again."""
    images = batch_image_rois(batch)
    features = model.features(batch.images)
    with torch.no_grad():
        every = model.roi_losses(
            features,
            rois_with_batch_index([r.boxes for r in images]),
            torch.cat([r.labels for r in images]),
            torch.cat([r.box_targets for r in images]),
            sampler.needs_pred_boxes,
        )
    sizes = [len(r.labels) for r in images]
    parts = zip(*([None] * 2 if t is None else t.split(sizes) for t in every), strict=True)
    readonly = [RoILosses(*p) for p in parts]
    selections = [
        as_selection(sampler.select(r, readonly[i], per_image, gen), len(r.labels))
        for i, r in enumerate(images)
    ]
    chosen = Chosen([s.indices for s in selections], selections, readonly)
    pairs = list(zip(images, chosen.indices, strict=True))
    labels = torch.cat([r.labels[c] for r, c in pairs])
    losses = model.roi_losses(
        features,
        rois_with_batch_index([r.boxes[c] for r, c in pairs]),
        labels,
        torch.cat([r.box_targets[c] for r, c in pairs]),
    )
    terms = batch_loss(
        model.decode_class, images, chosen.selections, losses, labels, sampler.loss_options
    )
    model.zero_grad(set_to_none=True)
    (terms.cls + terms.box).backward()


def _trunk_grads(model):
    return [p.grad.clone() for p in model.trunk.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", ["ohem", "pisa"])
@pytest.mark.parametrize("dropout", [False, True])
def test_the_split_pass_chooses_and_moves_the_trunk_as_the_two_poolings(name, dropout):
    batch, per_image = _batch(), 16
    sampler = Recording(build_sampler(replace(SamplerConfig(), name=name)))

    model = _model(dropout)
    torch.manual_seed(7)
    _two_poolings(model, sampler, batch, per_image, torch.Generator().manual_seed(1))
    expected, expected_chosen = _trunk_grads(model), sampler.chosen
    assert expected and sum(float(g.abs().sum()) for g in expected) > 0

    model = _model(dropout)
    sampler.chosen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keeps the gradients, not the weights
    updater = Updater(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0))
    torch.manual_seed(7)
    result = train_step(
        model, sampler, batch, updater, per_image, torch.Generator().manual_seed(1), 1
    )
    assert sampler.chosen == expected_chosen
    got = _trunk_grads(model)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)  # the same pooled values, the same training forward
    assert result.readonly_time > 0
