"""model.box_norm: data: per-class statistics of the training RoIs' box targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ohemcli.boxes import BOX_STDS, BoxNorm, decode, encode_deltas
from ohemcli.data.batching import TrainImages
from ohemcli.data.box_stats import fit_box_norm, make_box_norm
from ohemcli.data.targets import assign_targets
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError


def _jittered_proposals(dataset: VOCDataset, per_box: int = 12) -> dict[str, np.ndarray]:
    """Proposals around every ground-truth box: many foreground RoIs, some background."""
    gen = np.random.default_rng(0)
    out = {}
    for r in dataset.records:
        boxes = [np.array([[0, 0, r.width - 1, r.height - 1]], np.float32)]
        for box in r.boxes:
            side = np.array([box[2] - box[0], box[3] - box[1]] * 2, np.float32)
            boxes.append(box + gen.normal(0, 0.12, (per_box, 4)).astype(np.float32) * side)
        out[r.image_id] = np.concatenate(boxes)
    return out


@pytest.fixture(scope="module")
def images(small_synth: Path) -> TrainImages:
    dataset = VOCDataset(small_synth, "trainval")
    return TrainImages(dataset, _jittered_proposals(dataset), scale=160, max_size=220)


def test_data_norm_gives_mean_0_std_1_foreground_targets(images: TrainImages) -> None:
    images.box_norm = fit_box_norm(images, flip=True, show_progress=False)
    assert not torch.equal(images.box_norm.stds, BoxNorm.fixed(images.dataset.num_classes).stds)
    targets, labels = [], []
    for index in range(len(images)):
        for flip in (False, True):  # the training set as the trainer sees it
            sample = images[(index, flip)]
            fg = sample.labels > 0
            targets.append(sample.box_targets[fg].double())
            labels.append(sample.labels[fg])
    t, lab = torch.cat(targets), torch.cat(labels)
    for k in lab.unique().tolist():
        tk = t[lab == k]
        assert len(tk) > 20
        torch.testing.assert_close(
            tk.mean(dim=0), torch.zeros(4, dtype=torch.double), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            tk.std(dim=0, unbiased=False), torch.ones(4, dtype=torch.double), atol=1e-5, rtol=0
        )
    # With flips the dx mean is 0: every RoI's flipped copy negates its dx.
    assert torch.all(images.box_norm.means[1:, 0].abs() < 1e-6)


def test_from_deltas_by_hand() -> None:
    deltas = torch.tensor([[1.0, 2.0, 0.0, 4.0], [3.0, 2.0, 2.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    norm = BoxNorm.from_deltas(deltas, torch.tensor([1, 1, 2]), num_classes=2)
    assert torch.equal(norm.means[1], torch.zeros(4))
    # dy is constant in class 1 (std 0): the class keeps the fixed norm, as does class 2 (1 RoI).
    assert torch.equal(norm.stds[1], torch.tensor(BOX_STDS))
    assert torch.equal(norm.stds[2], torch.tensor(BOX_STDS)) and torch.equal(
        norm.means[2], torch.zeros(4)
    )
    varied = BoxNorm.from_deltas(
        deltas[:2] + torch.tensor([[0, 0.5, 0, 0], [0, -0.5, 0, 0]]), torch.tensor([1, 1]), 1
    )
    torch.testing.assert_close(varied.means[1], torch.tensor([2.0, 2.0, 1.0, 2.0]))
    torch.testing.assert_close(varied.stds[1], torch.tensor([1.0, 0.5, 1.0, 2.0]))
    assert torch.equal(varied.stds[0], torch.tensor(BOX_STDS))  # background row untouched


def test_flip_mirrors_before_normalising() -> None:
    rois, gt = torch.tensor([[10.0, 10.0, 50.0, 40.0]]), torch.tensor([[14.0, 12.0, 52.0, 44.0]])
    norm = BoxNorm(
        torch.tensor([[0.0] * 4, [0.3, 0.1, 0.0, 0.0]]), torch.tensor([[1.0] * 4, [0.2] * 4])
    )
    raw = encode_deltas(rois, gt)[0]
    t = assign_targets(rois, gt, torch.tensor([1]), 0.5, norm, flip=True).box_targets[0]
    assert t[0].item() == pytest.approx((-raw[0].item() - 0.3) / 0.2, abs=1e-6)
    assert t[1].item() == pytest.approx((raw[1].item() - 0.1) / 0.2, abs=1e-6)
    # Decoding with the same statistics undoes the encoding (unflipped).
    t = assign_targets(rois, gt, torch.tensor([1]), 0.5, norm).box_targets
    torch.testing.assert_close(decode(rois, t, norm.stds[1], norm.means[1]), gt)


def test_unknown_mode_names_the_key(images: TrainImages) -> None:
    with pytest.raises(UserError, match="model.box_norm"):
        make_box_norm("bogus", images, flip=True, show_progress=False)
