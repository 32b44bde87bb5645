"""Issue 35 #5 and #7, with CPU autocast (bf16) in place of CUDA AMP: ``rank_dtype: float32``
ranks in float32 inside the training autocast, and the read-only pass leaves no cast weights
without autograd history behind (pytorch#112583): the training forward's head gets gradients."""

from __future__ import annotations

import torch

from ohemcli.config import ModelConfig
from ohemcli.data.batching import Batch, ImageSample
from ohemcli.engine.candidates import batch_image_rois
from ohemcli.engine.step import readonly_losses
from ohemcli.model.fast_rcnn import FastRCNN, rois_with_batch_index


def _setup():
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=3)
    n = 24
    boxes = torch.tensor([[2.0 * i, 2.0, 2.0 * i + 24.0, 30.0 + i] for i in range(n)])
    labels = torch.tensor([1, 2, 0, 0] * (n // 4))
    sample = ImageSample(
        torch.rand(3, 48, 96), boxes, "img", 1.0, labels, torch.rand(n), torch.randn(n, 4) * 0.1
    )
    return (
        model,
        batch_image_rois(Batch(torch.rand(1, 3, 48, 96), [sample])),
        torch.rand(1, 3, 48, 96),
    )


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_float32_ranking_inside_the_training_autocast_equals_a_pass_outside_it():
    model, images, x = _setup()
    with _bf16():
        features = model.features(x)  # bf16, as the trunk gives them under --amp
        inside, _ = readonly_losses(model, features, images, rank_dtype="float32", dropout=False)
        bf16, _ = readonly_losses(model, features, images, rank_dtype="bfloat16", dropout=False)
    outside, _ = readonly_losses(
        model, features.float(), images, rank_dtype="float32", dropout=False
    )
    assert features.dtype == torch.bfloat16 and inside[0].cls.dtype == torch.float32
    assert torch.equal(inside[0].cls, outside[0].cls) and torch.equal(inside[0].box, outside[0].box)
    # bfloat16 ranking does differ: the equality above is not the autocast doing nothing.
    assert not torch.equal(bf16[0].cls, outside[0].cls)


def test_the_head_gets_gradients_after_a_read_only_pass_inside_autocast():
    model, images, x = _setup()
    cache_during_head: list[bool] = []
    model.head.register_forward_pre_hook(
        lambda *_: cache_during_head.append(torch.is_autocast_cache_enabled())
    )
    with _bf16():
        features = model.features(x)
        readonly_losses(model, features, images, rank_dtype="bfloat16", dropout=False)
        rois = rois_with_batch_index([r.boxes for r in images])
        losses = model.head_losses(
            model.pool(features, rois), rois, images[0].labels, images[0].box_targets
        )
    (losses.cls.sum() + losses.box.sum()).backward()
    assert cache_during_head == [False, True]  # the read-only pass ran with the cache off
    for name, p in [*model.head.named_parameters(), *model.cls_score.named_parameters()]:
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
