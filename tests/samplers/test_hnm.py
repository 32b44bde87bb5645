"""hnm: negatives come from the mined pool first; the mining pass finds planted false positives."""

import torch
from torch import nn

from ohemcli.config import SamplerConfig
from ohemcli.engine.mining import false_positives
from ohemcli.samplers import build_sampler
from ohemcli.samplers.base import ImageRoIs, MinedNegatives


def _rois():
    # 20 foreground, 100 background in [0.1, 0.5), 30 background under 0.1
    labels = torch.tensor([1] * 20 + [0] * 130)
    max_iou = torch.tensor([0.8] * 20 + [0.3] * 100 + [0.05] * 30)
    return ImageRoIs(torch.zeros(150, 4), labels, max_iou, torch.zeros(150, 4), "img")


def test_before_mining_hnm_equals_fixed():
    rois = _rois()
    a = build_sampler(SamplerConfig(name="hnm")).select(
        rois, None, 64, torch.Generator().manual_seed(1)
    )
    b = build_sampler(SamplerConfig(name="fixed")).select(
        rois, None, 64, torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, b)


def test_pool_negatives_are_taken_first():
    rois = _rois()
    sampler = build_sampler(SamplerConfig(name="hnm"))
    pool_idx = torch.tensor(
        [125, 130, 140, 149]
    )  # background under bg_lo: fixed would never pick them
    sampler.after_mining(MinedNegatives({"img": (pool_idx, torch.ones(4))}))
    chosen = sampler.select(rois, None, 64, torch.Generator().manual_seed(0))
    assert set(pool_idx.tolist()) <= set(chosen.tolist())
    assert int((rois.labels[chosen] > 0).sum()) == 16
    assert len(chosen) == 64


def test_pool_round_trips_through_state_dict():
    sampler = build_sampler(SamplerConfig(name="hnm"))
    sampler.after_mining(MinedNegatives({"a": (torch.tensor([3, 1]), torch.tensor([0.9, 0.8]))}))
    restored = build_sampler(SamplerConfig(name="hnm"))
    restored.load_state_dict(sampler.state_dict())
    idx, score = restored.pool.per_image["a"]
    assert idx.tolist() == [3, 1]
    assert torch.allclose(score, torch.tensor([0.9, 0.8]))


def test_false_positives_keeps_confident_background_highest_first():
    labels = torch.tensor([0, 0, 1, 0, 0])
    scores = torch.tensor([0.6, 0.2, 0.99, 0.95, 0.7])
    idx, s = false_positives(labels, scores, thresh=0.5, per_image=2)
    assert idx.tolist() == [3, 4]  # RoI 2 is foreground, RoI 1 is under the threshold
    assert torch.allclose(s, torch.tensor([0.95, 0.7]))


class PlantedScores(nn.Module):
    """A test double for FastRCNN whose object scores the test controls, per RoI position."""

    def __init__(self, hot: set[int]):
        super().__init__()
        self.hot = hot

    def features(self, images):
        return images

    def roi_forward(self, features, rois):
        logits = torch.zeros(len(rois), 3)
        logits[:, 0] = 5.0  # background by default
        for i in self.hot:
            if i < len(rois):
                logits[i] = torch.tensor([0.0, 8.0, 0.0])  # a confident object
        return logits, torch.zeros(len(rois), 12)


def test_mining_pass_finds_planted_false_positives(tmp_path):
    import numpy as np

    from ohemcli.data.batching import TrainImages
    from ohemcli.engine.mining import mine_false_positives
    from tests.helpers import tiny_voc_root

    root = tiny_voc_root(tmp_path, num_images=2)
    from ohemcli.data.voc import VOCDataset

    ds = VOCDataset(root, "trainval")
    # Proposals: 0 and 1 far from the object (background), 2 on the object (foreground).
    props = {
        r.image_id: np.array([[0, 0, 8, 8], [40, 40, 60, 60], [10, 10, 30, 30]], np.float32)
        for r in ds.records
    }
    images = TrainImages(ds, props, scale=64, max_size=64)
    model = PlantedScores(hot={1, 2})  # RoI 1 is a planted false positive; RoI 2 is a true object
    request = build_sampler(SamplerConfig(name="hnm")).mining_request()
    mined = mine_false_positives(model, images, request, torch.device("cpu"), show_progress=False)
    assert set(mined.per_image) == {r.image_id for r in ds.records}
    for idx, score in mined.per_image.values():
        assert idx.tolist() == [1]
        assert score.item() > 0.99
