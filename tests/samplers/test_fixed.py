"""The fixed-ratio sampler on hand-built labels."""

import torch

from ohemcli.config import SamplerConfig
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs


def _rois(labels, max_iou):
    n = len(labels)
    return ImageRoIs(
        boxes=torch.zeros(n, 4),
        labels=torch.tensor(labels),
        max_iou=torch.tensor(max_iou),
        box_targets=torch.zeros(n, 4),
        image_id="img",
    )


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_exactly_16_foreground_of_64_when_enough_exist():
    rois = _rois([1] * 40 + [0] * 200, [0.7] * 40 + [0.3] * 200)
    chosen = build_sampler(SamplerConfig(name="fixed")).select(rois, None, 64, _gen())
    assert len(chosen) == 64
    assert int((rois.labels[chosen] > 0).sum()) == 16
    assert len(set(chosen.tolist())) == 64  # no RoI twice


def test_all_foreground_plus_background_fill_when_short():
    rois = _rois([2] * 5 + [0] * 200, [0.9] * 5 + [0.2] * 200)
    chosen = build_sampler(SamplerConfig(name="fixed")).select(rois, None, 64, _gen())
    assert len(chosen) == 64
    assert int((rois.labels[chosen] > 0).sum()) == 5


def test_no_background_under_bg_lo():
    # 100 background RoIs under 0.1 and 10 in [0.1, 0.5): only the 10 may be picked.
    rois = _rois([1] * 30 + [0] * 110, [0.6] * 30 + [0.05] * 100 + [0.3] * 10)
    chosen = build_sampler(SamplerConfig(name="fixed")).select(rois, None, 64, _gen())
    bg = chosen[rois.labels[chosen] == 0]
    assert len(bg) == 10
    assert torch.all(rois.max_iou[bg] >= 0.1)
    assert len(chosen) == 26  # 16 foreground + the 10 usable background: Fast R-CNN returns fewer


def test_same_generator_same_picks():
    rois = _rois([1] * 40 + [0] * 200, [0.7] * 40 + [0.3] * 200)
    sampler = build_sampler(SamplerConfig(name="fixed"))
    a = sampler.select(rois, None, 64, _gen(5))
    b = sampler.select(rois, None, 64, _gen(5))
    c = sampler.select(rois, None, 64, _gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
