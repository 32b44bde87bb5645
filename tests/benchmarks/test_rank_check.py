"""The chosen-set overlap of two ranking precisions: the Jaccard helper by hand, and a bfloat16
choice on a fixed batch measured against float32's."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks.rank_check import choice_in, jaccard, mean_jaccard
from ohemcli.config import ModelConfig, SamplerConfig
from ohemcli.engine.candidates import batch_image_rois
from ohemcli.engine.step import choose_rois
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.samplers import build_sampler
from tests.engine.test_rank_pool import _batch


def test_jaccard_by_hand():
    assert jaccard(torch.tensor([1, 2, 3]), torch.tensor([3, 2, 1])) == 1.0
    assert jaccard(torch.tensor([1, 2, 3]), torch.tensor([2, 3, 4])) == 2 / 4
    assert jaccard(torch.tensor([1, 2]), torch.tensor([3])) == 0.0
    assert jaccard(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == 1.0
    a = [torch.tensor([0, 1, 2, 3]), torch.tensor([5])]
    b = [torch.tensor([0, 1, 2, 9]), torch.tensor([5])]  # 3/5 and 1
    assert mean_jaccard(a, b) == pytest.approx((3 / 5 + 1.0) / 2)


def test_bfloat16_ranking_choice_against_float32_on_a_fixed_batch():
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny", head_dim=32), num_classes=2).train()
    sampler = build_sampler(replace(SamplerConfig(), name="ohem", ohem_nms=False))
    batch, gen = _batch(), torch.Generator().manual_seed(1)
    before = torch.get_rng_state()
    f32 = choice_in(model, sampler, batch, 16, gen, "float32")
    bf16 = choice_in(model, sampler, batch, 16, gen, "bfloat16")
    assert torch.equal(torch.get_rng_state(), before)  # the training step's draws are untouched
    # float32 is the training path's own choice
    with torch.no_grad():
        features = model.features(batch.images)
        plain = choose_rois(model, sampler, features, batch_image_rois(batch), 16, gen).indices
    assert all(torch.equal(a, b) for a, b in zip(f32, plain, strict=True))
    # bfloat16 (8 bits of mantissa) moves the losses: the overlap is the share kept, by hand
    expected = [
        len(set(a.tolist()) & set(b.tolist())) / len(set(a.tolist()) | set(b.tolist()))
        for a, b in zip(f32, bf16, strict=True)
    ]
    assert mean_jaccard(f32, bf16) == pytest.approx(sum(expected) / 2)
    assert 0.5 < mean_jaccard(f32, bf16) <= 1.0
    assert all(len(c) == 16 for c in bf16)


def test_bfloat16_ranking_moves_the_losses_a_little():
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny", head_dim=32), num_classes=2).train()
    sampler = build_sampler(replace(SamplerConfig(), name="ohem"))
    batch = _batch()
    with torch.no_grad():
        features = model.features(batch.images)
        images = batch_image_rois(batch)
        runs = [
            choose_rois(model, sampler, features, images, 16, torch.Generator(), dtype).readonly
            for dtype in ("float32", "bfloat16")
        ]
    f32, bf16 = (torch.cat([r.cls for r in run]) for run in runs)
    assert runs[1][0].logits.dtype == torch.bfloat16  # the head ran in bfloat16
    assert not torch.equal(f32, bf16)
    torch.testing.assert_close(bf16, f32, rtol=0.05, atol=0.02)


def test_a_run_records_its_rank_dtype(tmp_path):
    """The run folder's config.yaml (config_to_yaml, as Trainer writes it) carries the key, and
    reads back; a bad value is one line naming it."""
    import yaml

    from ohemcli.config import config_to_yaml, load_config
    from ohemcli.errors import UserError

    cfg = load_config(None, {"sampler.name": "ohem", "sampler.rank_dtype": "bfloat16"})
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert yaml.safe_load(path.read_text())["sampler"]["rank_dtype"] == "bfloat16"
    assert load_config(str(path)).sampler.rank_dtype == "bfloat16"
    assert load_config(None).sampler.rank_dtype == "float32"  # the default
    with pytest.raises(UserError, match=r"sampler\.rank_dtype"):
        load_config(None, {"sampler.rank_dtype": "float16"})
