"""BCCD as a VOC root and converted to COCO by ``ohem data convert`` trains to the same weights
and the same mAP (VOC07 and COCO AP) for the same seed and config.

A short run on a slice of BCCD (6 trainval and 4 test images, copied into a VOC root of their
own) so that it stays in seconds; the slice is converted, not hand-made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ohemcli.cli import app
from ohemcli.config import load_config
from ohemcli.engine.train import train
from ohemcli.runs.checkpointer import read_checkpoint, saved_weights
from tests.conftest import shared_root


def _bccd_slice(bccd: Path, root: Path, sizes: dict[str, int]) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for split, n in sizes.items():
        ids = (bccd / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        for i in ids:
            shutil.copy(bccd / "Annotations" / f"{i}.xml", root / "Annotations")
            shutil.copy(bccd / "JPEGImages" / f"{i}.jpg", root / "JPEGImages")
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def _weights(run: Path) -> dict[str, torch.Tensor]:
    weights, _ = saved_weights(read_checkpoint(run / "checkpoint.pt"))
    return weights


def test_bccd_as_voc_and_as_coco_train_to_identical_weights_and_map(tmp_path: Path, monkeypatch):
    bccd = shared_root("bccd")
    monkeypatch.setattr("ohemcli.data.proposals.load.available_cpus", lambda: 1)  # no worker pool
    voc = _bccd_slice(bccd, tmp_path / "voc", {"trainval": 6, "test": 4})
    coco = tmp_path / "coco"
    result = CliRunner().invoke(
        app, ["data", "convert", "--data", str(voc), "--to", "coco", "--out", str(coco)]
    )
    assert result.exit_code == 0, result.output
    keys = {
        "data.scale": 160, "data.max_size": 220, "data.max_proposals": 100,
        "data.ss_max_side": 160, "data.workers": 0, "model.backbone": "tiny",
        "model.head_dim": 32, "sampler.name": "ohem", "sampler.batch_rois": 32,
        "train.iters": 4, "train.lr": 0.01, "train.lr_steps": [], "train.warmup_iters": 0,
        "train.log_every": 2, "train.checkpoint_every": 4, "train.eval_points": 0,
        "eval.metric": "all", "eval.score_thresh": 0.0,
    }  # fmt: skip
    summaries = {}
    for name, root in (("voc", voc), ("coco", coco)):
        cfg = load_config(None, {**keys, "data.root": str(root)})
        summaries[name] = train(cfg, tmp_path / f"run-{name}", show_progress=False)
    a, b = _weights(tmp_path / "run-voc"), _weights(tmp_path / "run-coco")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    sa, sb = summaries["voc"], summaries["coco"]
    assert sa["AP"] == sb["AP"] and round(sa["mAP"], 4) == round(sb["mAP"], 4)
    assert sa["mAP"] == sb["mAP"]
    # COCO AP: the VOC root's records converted in memory, the COCO set's own json on disk
    import json

    ma = json.loads((tmp_path / "run-voc" / "eval" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "run-coco" / "eval" / "metrics.json").read_text())
    assert ma["metrics"]["coco"]["coco"] == mb["metrics"]["coco"]["coco"]
    assert sum(ma["num_det"].values()) > 0  # a comparison of something, not of two empty lists


@pytest.fixture(autouse=True)
def _quiet_cache(tmp_path: Path, monkeypatch):
    """A cache of this test's own, so that both runs compute their proposals here."""
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
