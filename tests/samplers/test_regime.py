"""Each sampler's regime: the reference's budget by default, the config's one budget under
--regime common, and the method's own keys (focal's sigmoid classifier) in both."""

import dataclasses
import math

import pytest
import torch

from ohemcli.config import ExperimentConfig, ModelConfig, SamplerConfig, config_to_dict
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.runs.settings import comparable_config
from ohemcli.samplers import SAMPLERS
from ohemcli.samplers.regime import REGIMES, apply_regime, regime_record


def _cfg(name: str, regime: str = "reference", batch_rois: int = 128) -> ExperimentConfig:
    sampler = SamplerConfig(name=name, regime=regime, batch_rois=batch_rois)
    return dataclasses.replace(ExperimentConfig(), sampler=sampler)


def test_every_built_in_sampler_declares_a_regime_with_its_reference():
    assert set(REGIMES) == set(SAMPLERS)
    for name, regime in REGIMES.items():
        assert regime.reference and regime.scoring in ("softmax", "sigmoid"), name


def test_reference_regime_sets_the_budget_per_sampler():
    # mmdetection's R-CNN samplers: 512 RoIs per image (x 2 images); Fast R-CNN's: 128 per batch
    assert apply_regime(_cfg("ohem-mmdet")).sampler.batch_rois == 1024
    assert apply_regime(_cfg("libra")).sampler.batch_rois == 1024
    assert apply_regime(_cfg("pisa")).sampler.batch_rois == 1024
    for name in ("fixed", "hnm", "ohem"):
        assert apply_regime(_cfg(name, batch_rois=32)).sampler.batch_rois == 128
    assert apply_regime(_cfg("ohem-mmdet")).sampler.rank_dropout is False  # no dropout in mmdet
    assert apply_regime(_cfg("ohem")).sampler.rank_dropout is True  # the release's read-only net
    record = regime_record(apply_regime(_cfg("ohem-mmdet")))
    assert record["mode"] == "reference" and record["rois_per_image"] == 512
    assert regime_record(apply_regime(_cfg("focal")))["rois_per_image"] is None  # every RoI


def test_common_regime_keeps_the_config_budget_and_the_method():
    common = apply_regime(_cfg("ohem-mmdet", "common", 128))
    assert common.sampler.batch_rois == 128 and regime_record(common)["mode"] == "common"
    focal = apply_regime(_cfg("focal", "common"))
    assert focal.model.classifier == "sigmoid"  # the loss is the method, in any regime
    softmax = dataclasses.replace(
        _cfg("focal"), sampler=SamplerConfig("focal", focal_form="softmax")
    )
    assert apply_regime(softmax).model.classifier == "softmax"
    assert apply_regime(apply_regime(_cfg("pisa"))) == apply_regime(_cfg("pisa"))  # idempotent


def test_runs_of_one_compare_stay_comparable_across_regimes():
    base = config_to_dict(apply_regime(_cfg("fixed")))
    assert comparable_config(config_to_dict(apply_regime(_cfg("ohem-mmdet")))) == (
        comparable_config(base)
    )
    assert comparable_config(config_to_dict(apply_regime(_cfg("focal")))) == comparable_config(base)
    # under the common regime the budget is the compare's: a different one is a different setting
    common = comparable_config(config_to_dict(apply_regime(_cfg("fixed", "common", 128))))
    other = comparable_config(config_to_dict(apply_regime(_cfg("fixed", "common", 64))))
    assert common != other


def test_sigmoid_classifier_starts_at_the_prior_and_scores_with_sigmoids():
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny", classifier="sigmoid"), num_classes=3, prior=0.01)
    bias = model.cls_score.bias.detach()
    assert bias[1:].tolist() == pytest.approx([-math.log(99)] * 3) and bias[0].item() == 0.0
    logits = torch.tensor([[5.0, 0.0, 2.0, -1.0]])
    probs = model.class_probs(logits)
    fg = torch.sigmoid(torch.tensor([0.0, 2.0, -1.0]))
    assert torch.allclose(probs[0, 1:], fg) and probs[0, 0].item() == pytest.approx(1 - fg.max())
    softmax = FastRCNN(ModelConfig(backbone="tiny"), num_classes=3)
    assert softmax.cls_score.bias.abs().sum().item() == 0.0
    assert torch.allclose(softmax.class_probs(logits), logits.softmax(dim=1))


def test_the_docs_regime_table_states_each_samplers_budget_and_scores():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "samplers.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:-1]]
        for line in page.splitlines()
        if line.startswith("| `") and line.count("|") == 8 and " " not in line.split("`")[1]
    }
    assert set(rows) == set(REGIMES)
    for name, regime in REGIMES.items():
        per_image, share, _, _, scores, _ = rows[name]
        want = "every RoI" if regime.rois_per_image is None else str(regime.rois_per_image)
        assert per_image == want, name
        assert share == (
            "—"
            if regime.rois_per_image is None
            else "none"
            if regime.fg_fraction is None
            else f"{regime.fg_fraction:.0%}"
        )
        assert scores == regime.scoring, name


def test_a_config_budget_that_the_reference_regime_replaces_is_said():
    from ohemcli.samplers.regime import budget_note

    note = budget_note(_cfg("ohem-mmdet", batch_rois=32))
    assert note is not None and "512 RoIs per image" in note and "16" in note
    assert "--regime common" in note
    assert budget_note(_cfg("fixed", batch_rois=128)) is None  # the config is the reference's
    assert budget_note(_cfg("ohem-mmdet", "common", 32)) is None  # the config's budget runs
    assert budget_note(_cfg("focal", batch_rois=32)) is None  # every RoI in any regime


def test_a_plugin_runs_in_the_regime_it_declares_else_in_the_common_one():
    declares = "tests.samplers.plugin_fixtures:DeclaresARegime"
    applied = apply_regime(_cfg(declares, batch_rois=128))
    assert applied.sampler.batch_rois == 32 and applied.sampler.fg_fraction == 0.5
    assert regime_record(applied)["mode"] == "reference"
    assert regime_record(applied)["reference"] == "a paper's appendix"
    plain = apply_regime(_cfg("tests.samplers.plugin_fixtures:RaisesAtThird", batch_rois=48))
    assert plain.sampler.batch_rois == 48 and regime_record(plain)["mode"] == "common"
