"""The batched mining pass scores every RoI as the one-image-at-a-time pass does."""

import cv2
import numpy as np
import torch

from ohemcli.config import ModelConfig
from ohemcli.data.batching import TrainImages
from ohemcli.data.voc import VOCDataset
from ohemcli.engine.mining import mine_false_positives, mining_batches
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.samplers.base import MiningRequest
from tests.helpers import tiny_voc_root


def _two_sizes(tmp_path):
    """Six images: im001, im003, im005 widened to 64x80, the others 64x64; 40 random RoIs each."""
    root = tiny_voc_root(tmp_path, num_images=6)
    for i in (1, 3, 5):
        path = root / "JPEGImages" / f"im{i:03d}.jpg"
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (80, 64)))
        xml = root / "Annotations" / f"im{i:03d}.xml"
        xml.write_text(xml.read_text().replace("<width>64</width>", "<width>80</width>"))
    ds = VOCDataset(root, "trainval")
    rng = np.random.default_rng(0)
    proposals = {}
    for r in ds.records:
        xy = rng.uniform(0, 40, (40, 2))
        wh = rng.uniform(4, 24, (40, 2))
        proposals[r.image_id] = np.hstack([xy, xy + wh]).astype(np.float32)
    return TrainImages(ds, proposals, scale=64, max_size=100)


def test_batches_hold_images_of_one_size(tmp_path):
    images = _two_sizes(tmp_path)
    batches = mining_batches(images, 2)
    assert sorted(i for b in batches for i, _ in b) == list(range(6))  # each image once
    assert all(not flip for b in batches for _, flip in b)  # unflipped
    assert [[i for i, _ in b] for b in batches] == [[0, 2], [4], [1, 3], [5]]


def test_batched_mining_equals_one_image_at_a_time(tmp_path):
    images = _two_sizes(tmp_path)
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    # Threshold 0 and no cap: every background RoI is reported with its score.
    request = MiningRequest(0.0, 10_000, {"im002": torch.tensor([5, 0, 7])})
    cpu = torch.device("cpu")
    one = mine_false_positives(model, images, request, cpu, show_progress=False, batch_size=1)
    many = mine_false_positives(model, images, request, cpu, show_progress=False, batch_size=4)
    assert one.per_image.keys() == many.per_image.keys() == {f"im{i:03d}" for i in range(6)}
    for key, (idx, score) in one.per_image.items():
        order_a, order_b = torch.argsort(idx), torch.argsort(many.per_image[key][0])
        assert torch.equal(idx[order_a], many.per_image[key][0][order_b])
        assert torch.allclose(score[order_a], many.per_image[key][1][order_b], atol=1e-6)
        assert len(idx) > 30  # most of the 40 random RoIs are background
    assert torch.allclose(one.rescored["im002"], many.rescored["im002"], atol=1e-6)
    assert one.rescored.keys() == {"im002"} and one.rescored["im002"].shape == (3,)


def test_mining_restores_the_training_mode(tmp_path):
    images = _two_sizes(tmp_path)
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2).train()
    mine_false_positives(
        model, images, MiningRequest(0.5, 8), torch.device("cpu"), show_progress=False
    )
    assert model.training


def test_bfloat16_mining_scores_close_to_float32(tmp_path):
    """rank_dtype bfloat16 runs the pass under autocast: the scores move by bfloat16's rounding
    (8 bits of mantissa), not more, and the same RoIs are watched."""
    images = _two_sizes(tmp_path)
    torch.manual_seed(0)
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    request = MiningRequest(0.0, 10_000, {"im002": torch.tensor([5, 0, 7])})
    cpu = torch.device("cpu")
    runs = [
        mine_false_positives(model, images, request, cpu, show_progress=False, rank_dtype=dtype)
        for dtype in ("float32", "bfloat16")
    ]
    f32, bf16 = (run.rescored["im002"] for run in runs)
    assert f32.dtype == bf16.dtype == torch.float32
    assert not torch.equal(f32, bf16)
    torch.testing.assert_close(bf16, f32, rtol=0.03, atol=0.01)
