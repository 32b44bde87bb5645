"""The paper preset uses the release's settings; ablation and protocol options reach the config."""

from __future__ import annotations

from ohemcli.cli.overrides import build_config


def test_paper_preset_uses_the_releases_settings() -> None:
    cfg = build_config("voc07_vgg16", {})
    assert cfg.data.proposals == "release" and cfg.data.max_proposals == 0  # not made a path
    assert cfg.model.box_norm == "data"
    assert cfg.sampler.ohem_nms_scope == "label"
    assert (cfg.eval.max_dets, cfg.eval.score_thresh, cfg.eval.nms) == (100, 0.05, 0.3)


def test_ablation_and_protocol_options_reach_the_config() -> None:
    options = {"bg_lo": 0.0, "images_per_batch": 1, "max_dets": 2000, "score_thresh": 0.00001}
    cfg = build_config("voc07_vgg16", options)
    assert cfg.sampler.bg_lo == 0.0 and cfg.train.images_per_batch == 1
    assert cfg.eval.max_dets == 2000 and cfg.eval.score_thresh == 0.00001
    assert cfg.sampler.batch_rois == 128  # N = 1 keeps B = 128
