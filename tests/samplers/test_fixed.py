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


def test_sampler_names_are_listed_once_and_the_cli_choice_derives_from_them():
    from ohemcli.samplers import SAMPLERS, SamplerName

    assert [m.value for m in SamplerName] == list(SAMPLERS) == [
        "fixed", "hnm", "ohem", "ohem-mmdet", "libra", "pisa", "sampling-free", "focal",
    ]  # fmt: skip
    for name in SAMPLERS:
        assert build_sampler(SamplerConfig(name=name)) is not None


def test_unknown_sampler_is_a_user_error_naming_the_config_key():
    import pytest

    from ohemcli.errors import UserError

    with pytest.raises(UserError, match=r"^sampler\.name: unknown 'ohm'"):
        build_sampler(SamplerConfig(name="ohm"))


def test_the_factory_hands_the_config_numbers_to_the_constructor():
    from ohemcli.samplers import FixedSampler

    sampler = build_sampler(SamplerConfig(name="fixed", fg_fraction=0.5, fg_thresh=0.6, bg_lo=0.0))
    assert isinstance(sampler, FixedSampler)
    assert (sampler.fg_fraction, sampler.fg_thresh, sampler.bg_lo) == (0.5, 0.6, 0.0)
    # fg_fraction 0.5 of 64 with plenty of both: 32 foreground, and IoU 0.05 background allowed.
    rois = _rois([1] * 40 + [0] * 200, [0.7] * 40 + [0.05] * 200)
    chosen = sampler.select(rois, None, 64, _gen())
    assert int((rois.labels[chosen] > 0).sum()) == 32 and len(chosen) == 64
