"""One iteration with explicit inputs: the chosen RoIs' IoU histogram, fg share, and the update."""

from __future__ import annotations

import pytest
import torch

from ohemcli.config import ModelConfig
from ohemcli.data.batching import Batch, ImageSample
from ohemcli.engine.candidates import batch_image_rois
from ohemcli.engine.state import TrainState
from ohemcli.engine.step import (
    NonFiniteLoss,
    Updater,
    check_finite,
    choose_rois,
    iou_histogram,
    train_step,
)
from ohemcli.errors import UserError
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import Stateless


class TakeFirst(Stateless):
    """A test sampler: the first ``num`` RoIs of each image, in order."""

    def select(self, rois, roi_losses, num, gen):
        return torch.arange(min(num, len(rois.labels)))


def _sample(max_iou: list[float], labels: list[int]) -> ImageSample:
    n = len(max_iou)
    boxes = torch.tensor([[4.0 * i, 2.0, 4.0 * i + 20.0, 30.0] for i in range(n)])
    return ImageSample(
        torch.rand(3, 48, 64),
        boxes,
        "img",
        1.0,
        torch.tensor(labels),
        torch.tensor(max_iou),
        torch.zeros(n, 4),
    )


def _setup():
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    return model, Updater(optimizer, scheduler)


def test_iou_histogram_bins_by_hand():
    # bins [0,.1) [.1,.2) ... [.9,1]: 0.1 opens bin 1, 1.0 closes bin 9
    iou = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.5, 0.55, 0.7, 0.99, 1.0])
    assert iou_histogram(iou) == [2, 1, 0, 1, 0, 2, 0, 1, 0, 2]
    assert iou_histogram(torch.zeros(0)) == [0] * 10


def test_step_logs_the_chosen_rois_iou_and_the_windows_pool_them():
    model, updater = _setup()
    # image 1: 3 RoIs, the sampler takes the first 2 (IoU 0.62 fg, 0.15 bg); 0.95 is left out
    # image 2: the first 2 of 2 (IoU 0.05 and 0.45, both bg)
    batch = Batch(
        torch.rand(2, 3, 48, 64),
        [_sample([0.62, 0.15, 0.95], [1, 0, 2]), _sample([0.05, 0.45], [0, 0])],
    )
    first = train_step(model, TakeFirst(), batch, updater, 2, torch.Generator(), 1)
    assert first.iou_hist == [1, 1, 0, 0, 1, 0, 1, 0, 0, 0]
    assert (first.num_chosen, first.num_fg, first.fg_fraction) == (4, 1, 0.25)
    # a second step with 1 RoI per image, both foreground
    second = train_step(model, TakeFirst(), batch, updater, 1, torch.Generator(), 2)
    assert second.iou_hist == [1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert (second.num_chosen, second.num_fg) == (2, 1)
    state = TrainState()
    state.record(first, 0.1, 0.0)
    state.record(second, 0.1, 0.0)
    line = state.log_line(2, 0.01)
    assert line["iou_hist"] == [2, 1, 0, 0, 1, 0, 2, 0, 0, 0]
    assert line["fg_fraction"] == pytest.approx(2 / 6)  # pooled, not the mean 0.375 of the steps
    assert line["loss"] == pytest.approx((first.loss + second.loss) / 2)
    again = state.log_line(3, 0.01)  # a fresh window
    assert again["iou_hist"] == [0] * 10 and again["fg_fraction"] == 0.0


def test_step_updates_the_weights_and_the_schedule():
    model, updater = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    batch = Batch(torch.rand(1, 3, 48, 64), [_sample([0.7, 0.2], [1, 0])])
    train_step(model, TakeFirst(), batch, updater, 2, torch.Generator(), 1)
    assert updater.scheduler.last_epoch == 1
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    assert any(changed)


def test_choose_rois_runs_the_read_only_pass_only_when_asked():
    model, _ = _setup()
    images = batch_image_rois(
        Batch(torch.rand(1, 3, 48, 64), [_sample([0.7, 0.2, 0.1], [1, 0, 0])])
    )
    features = model.features(torch.rand(1, 3, 48, 64))
    plain = choose_rois(model, TakeFirst(), features, images, 2, torch.Generator())
    assert plain.readonly is None and plain.indices[0].tolist() == [0, 1]

    class Hardest(TakeFirst):
        needs_roi_losses = True

        def select(self, rois, roi_losses, num, gen):
            return torch.topk(roi_losses.total, num).indices

    hard = choose_rois(model, Hardest(), features, images, 1, torch.Generator())
    assert hard.readonly is not None and hard.readonly[0].cls.shape == (3,)
    assert hard.indices[0].item() == hard.readonly[0].total.argmax().item()


def test_non_finite_loss_names_the_term_and_leaves_the_weights():
    with pytest.raises(NonFiniteLoss, match="box loss became nan at iteration 7") as info:
        check_finite(RoILosses(torch.ones(2), torch.tensor([0.0, float("nan")])), 2, 7)
    assert isinstance(info.value, UserError) and "train.lr" in str(info.value)
    with pytest.raises(NonFiniteLoss, match="cls loss became inf"):
        check_finite(RoILosses(torch.tensor([float("inf")]), torch.zeros(1)), 1, 1)
    model, updater = _setup()
    with torch.no_grad():
        model.cls_score.weight.fill_(float("nan"))  # NaN logits: a NaN classification loss
    before = [p.detach().clone().nan_to_num() for p in model.parameters()]
    batch = Batch(torch.rand(1, 3, 48, 64), [_sample([0.7, 0.2], [1, 0])])
    with pytest.raises(NonFiniteLoss, match="cls loss became nan at iteration 4"):
        train_step(model, TakeFirst(), batch, updater, 2, torch.Generator(), 4)
    after = [p.detach().nan_to_num() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert updater.scheduler.last_epoch == 0  # no optimizer or scheduler step


class Weighted(TakeFirst):
    """Every RoI, each loss term times ``scale`` (a Selection)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def select(self, rois, roi_losses, num, gen):
        from ohemcli.samplers.base import Selection

        n = len(rois.labels)
        weight = torch.full((n,), self.scale)
        return Selection(torch.arange(n), cls_weight=weight, box_weight=weight)


def test_selection_weights_scale_the_training_loss():
    batch = Batch(torch.rand(1, 3, 48, 64), [_sample([0.7, 0.2, 0.6], [1, 0, 1])])
    batch.samples[0].box_targets[0] = torch.tensor([1.0, -1.0, 0.5, 0.0])
    results = []
    for scale in (1.0, 2.0, 0.0):
        model, updater = _setup()  # the same weights each time
        results.append(train_step(model, Weighted(scale), batch, updater, 3, torch.Generator(), 1))
    one, two, zero = results
    assert one.loss > 0 and two.loss == pytest.approx(2 * one.loss, rel=1e-5)
    assert two.loss_box == pytest.approx(2 * one.loss_box, rel=1e-5) and zero.loss == 0.0


def test_every_built_in_sampler_trains_one_step():
    from ohemcli.config import SamplerConfig
    from ohemcli.samplers import SAMPLERS, build_sampler

    iou = [0.7, 0.55, 0.3, 0.2, 0.05, 0.45, 0.0, 1.0]
    labels = [1, 2, 0, 0, 0, 0, 0, 2]
    sample = _sample(iou, labels)
    sample.gt_index = torch.tensor([0, 1, 0, 0, 0, 1, 0, 1])
    for name in SAMPLERS:
        model, updater = _setup()
        sampler = build_sampler(SamplerConfig(name=name))
        batch = Batch(torch.rand(1, 3, 48, 64), [sample])
        result = train_step(model, sampler, batch, updater, 4, torch.Generator(), 1)
        assert result.loss == pytest.approx(result.loss_cls + result.loss_box, rel=1e-5), name
        every = name in ("sampling-free", "focal")
        assert result.num_chosen == (8 if every else 4), name
