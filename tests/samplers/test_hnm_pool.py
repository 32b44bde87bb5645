"""hnm's pool across mining passes: accumulate (R-CNN's hard-negative cache) or replace."""

import math

import torch
from torch import nn

from ohemcli.config import SamplerConfig
from ohemcli.engine.mining import mine_false_positives
from ohemcli.samplers import HNMSampler, build_sampler
from ohemcli.samplers.base import MinedNegatives
from ohemcli.samplers.hnm import merge_pool


def _t(*values):
    return torch.tensor(values)


def _pass(new, rescored=None):
    """A mining pass's result for image "a": new false positives {pos: score}, pool rescores."""
    per_image = {}
    if new:
        pos, score = zip(*sorted(new.items(), key=lambda kv: -kv[1]), strict=True)
        per_image["a"] = (torch.tensor(pos), torch.tensor(score))
    return MinedNegatives(per_image, {"a": torch.tensor(rescored)} if rescored else {})


def _pool(sampler):
    idx, score = sampler.pool.per_image.get("a", (_t(), _t()))
    return dict(zip(idx.tolist(), [round(v, 4) for v in score.tolist()], strict=True))


def _hnm(pool="accumulate", cap=64):
    return build_sampler(
        SamplerConfig(name="hnm", hnm_pool=pool, hnm_pool_per_image=cap, hnm_fp_thresh=0.5,
                      hnm_evict_thresh=0.3)
    )  # fmt: skip


def test_the_factory_passes_the_pool_rule():
    sampler = _hnm("replace", cap=7)
    assert isinstance(sampler, HNMSampler)
    assert (sampler.pool_mode, sampler.pool_per_image, sampler.evict_thresh) == ("replace", 7, 0.3)
    assert SamplerConfig().hnm_pool == "accumulate"


def test_accumulate_grows_across_passes_and_replace_does_not():
    acc, rep = _hnm("accumulate"), _hnm("replace")
    first = _pass({3: 0.9})
    acc.after_mining(first)
    rep.after_mining(first)
    assert _pool(acc) == _pool(rep) == {3: 0.9}
    # RoI 3 now scores 0.45: no longer a false positive (< 0.5), but not easy either (>= 0.3).
    assert acc.mining_request().rescore["a"].tolist() == [3]
    assert rep.mining_request().rescore == {}  # replace needs no fresh scores of its pool
    second = _pass({5: 0.8}, rescored=[0.45])
    acc.after_mining(second)
    rep.after_mining(_pass({5: 0.8}))
    assert _pool(acc) == {5: 0.8, 3: 0.45}
    assert _pool(rep) == {5: 0.8}  # replace: exactly the latest pass's false positives
    assert acc.pool_size == 2 and rep.pool_size == 1


def test_a_pooled_roi_scored_below_the_eviction_threshold_leaves():
    sampler = _hnm()
    sampler.after_mining(_pass({3: 0.9, 4: 0.7}))
    rescore = sampler.mining_request().rescore["a"].tolist()
    assert rescore == [3, 4]
    sampler.after_mining(_pass({}, rescored=[0.29, 0.31]))  # 3 became easy; 4 is still hard
    assert _pool(sampler) == {4: 0.31}
    sampler.after_mining(_pass({}, rescored=[0.1]))
    assert _pool(sampler) == {} and sampler.pool.per_image == {}


def test_the_cap_keeps_the_highest_latest_scores():
    sampler = _hnm(cap=2)
    sampler.after_mining(_pass({3: 0.95, 4: 0.6}))
    # Latest scores: pooled 3 -> 0.55, pooled 4 -> 0.35; new 5 at 0.9 and 6 at 0.7.
    sampler.after_mining(_pass({5: 0.9, 6: 0.7, 3: 0.55}, rescored=[0.55, 0.35]))
    assert list(sampler.pool.per_image["a"][0].tolist()) == [5, 6]


def test_merge_pool_counts_a_roi_found_again_once():
    idx, score = merge_pool(_t(3, 4), _t(0.8, 0.2), (_t(3, 9), _t(0.8, 0.6)), 0.3, 10)
    assert idx.tolist() == [3, 9]  # 4 is evicted (0.2 < 0.3); 3 is pooled and new: once
    assert torch.allclose(score, _t(0.8, 0.6))


def test_evict_above_fp_thresh_acts_as_fp_thresh():
    sampler = build_sampler(
        SamplerConfig(name="hnm", hnm_fp_thresh=0.2, hnm_evict_thresh=0.3, hnm_pool_per_image=1)
    )
    sampler.after_mining(_pass({3: 0.9}))
    # 0.25 is a false positive again (>= 0.2) even though under hnm_evict_thresh: it stays.
    sampler.after_mining(_pass({}, rescored=[0.25]))
    assert _pool(sampler) == {3: 0.25}


def test_pool_and_rule_round_trip_through_state_dict():
    sampler = _hnm()
    sampler.after_mining(_pass({3: 0.9, 1: 0.8}))
    sampler.after_mining(_pass({7: 0.6}, rescored=[0.4, 0.35]))
    restored = _hnm()
    restored.load_state_dict(sampler.state_dict())
    assert _pool(restored) == _pool(sampler) == {7: 0.6, 3: 0.4, 1: 0.35}


class ScoredRoIs(nn.Module):
    """A FastRCNN stand-in whose highest foreground probability per RoI position is set."""

    def __init__(self, probs):
        super().__init__()
        self.probs = probs

    def features(self, images):
        return images

    def roi_forward(self, features, rois):
        logits = torch.full((len(rois), 3), -50.0)
        logits[:, 0] = 0.0
        for i, p in self.probs.items():
            logits[i, 1] = math.log(p / (1 - p))  # softmax over (0, logit, -50): class 1 gets p
        return logits, torch.zeros(len(rois), 12)


def test_mining_passes_feed_the_pool_end_to_end(tmp_path):
    import numpy as np

    from ohemcli.data.batching import TrainImages
    from ohemcli.data.voc import VOCDataset
    from tests.helpers import tiny_voc_root

    ds = VOCDataset(tiny_voc_root(tmp_path, num_images=1), "trainval")
    # RoIs 0 and 1 are background (far from the object), RoI 2 is the object itself.
    boxes = np.array([[0, 0, 8, 8], [40, 40, 60, 60], [10, 10, 30, 30]], np.float32)
    images = TrainImages(ds, {ds.records[0].image_id: boxes}, scale=64, max_size=64)
    sampler = _hnm()
    image_id = ds.records[0].image_id
    for probs, expected in [
        ({1: 0.9, 2: 0.99}, [1]),  # RoI 2 is foreground: never a false positive
        ({0: 0.8, 1: 0.4}, [0, 1]),  # 1 stays at 0.4 (>= 0.3), 0 joins
        ({0: 0.7, 1: 0.1}, [0]),  # 1 became easy: it leaves
    ]:
        request = sampler.mining_request()
        mined = mine_false_positives(
            ScoredRoIs(probs), images, request, torch.device("cpu"), show_progress=False
        )
        sampler.after_mining(mined)
        assert sampler.pool.per_image[image_id][0].tolist() == expected
