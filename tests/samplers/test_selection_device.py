"""Issue 35 #1: every sampler's answer, a plugin's included, ends on the RoIs' device, in one
place (``as_selection`` called from ``engine.step.choose_rois``); ``meta`` stands in for CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ohemcli.config import SamplerConfig
from ohemcli.engine.step import choose_rois
from ohemcli.model.losses import RoILosses
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs, ProtocolError, Selection, as_selection

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "plugins"
META = torch.device("meta")


def _rois(n: int, device: str = "cpu") -> ImageRoIs:
    labels = torch.tensor([1, 1] + [0] * (n - 2), device=device)
    z = torch.zeros(n, device=device)
    return ImageRoIs(
        torch.zeros(n, 4, device=device), labels, z, torch.zeros(n, 4, device=device), "i"
    )


def test_the_example_plugins_cpu_weights_move_to_the_rois_device(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sampler = build_sampler(SamplerConfig(name="hard_after_warmup:HardAfterWarmup"))
    sampler.inner.warmup = 0
    cls = torch.tensor([0.0, 0.0, 0.1, 0.9, 0.5, 0.2])
    answer = sampler.select(_rois(6), RoILosses(cls, torch.zeros(6)), 4, torch.Generator())
    assert answer.cls_weight is not None and answer.cls_weight.device.type == "cpu"
    sel = as_selection(answer, 6, META)
    assert sel.indices.is_meta and sel.cls_weight is not None and sel.cls_weight.is_meta
    assert sel.indices.shape == (4,) and sel.loss == "ce"


class _CpuAnswers:
    """A plugin that computes on the CPU whatever the RoIs' device (as a careless user's would)."""

    needs_roi_losses = False
    needs_mining = False

    def select(self, rois, roi_losses, num, gen):
        idx = torch.arange(min(num, len(rois.labels)))
        return Selection(idx, cls_weight=torch.ones(len(idx)), box_weight=torch.ones(len(idx)))


def test_choose_rois_puts_every_selection_on_the_rois_device():
    images = [_rois(5, "meta"), _rois(7, "meta")]
    features = torch.empty(2, 3, 4, 4, device="meta")
    chosen = choose_rois(None, _CpuAnswers(), features, images, 3, torch.Generator())  # type: ignore[arg-type]
    for sel in chosen.selections:
        assert sel.indices.is_meta and sel.cls_weight.is_meta and sel.box_weight.is_meta
    assert all(i.is_meta for i in chosen.indices)


def test_positions_are_checked_before_the_move():
    with pytest.raises(ProtocolError, match=r"outside \[0, 3\)"):
        as_selection(torch.tensor([0, 3]), 3, META)
    with pytest.raises(ProtocolError, match="cls_weight must be a tensor of shape"):
        as_selection(Selection(torch.tensor([0, 1]), cls_weight=torch.ones(3)), 3, META)


def test_without_a_device_the_answer_stays_where_it_is():
    sel = as_selection(torch.tensor([2, 0]), 3)
    assert sel.indices.device.type == "cpu" and sel.indices.tolist() == [2, 0]
