"""The built-in synthetic data set: deterministic, valid VOC layout, the promised variety."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ohemcli.data.synthetic import generate as synthetic
from ohemcli.data.synthetic.generate import SYNTH_CLASSES, generate_synthetic, resolve_data_root
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError

TRAINVAL, TEST = 24, 6


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "s0"
    return generate_synthetic(out, trainval=TRAINVAL, test=TEST, seed=0, show_progress=False)


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / folder).iterdir())}


def test_same_seed_gives_identical_files(synth_root: Path, tmp_path: Path) -> None:
    again = generate_synthetic(tmp_path / "again", TRAINVAL, TEST, seed=0, show_progress=False)
    assert _files(again, "Annotations") == _files(synth_root, "Annotations")
    assert _files(again, "JPEGImages") == _files(synth_root, "JPEGImages")
    other = generate_synthetic(tmp_path / "other", TRAINVAL, TEST, seed=1, show_progress=False)
    assert _files(other, "Annotations") != _files(synth_root, "Annotations")


def test_layout_reads_as_voc(synth_root: Path) -> None:
    trainval = VOCDataset(synth_root, "trainval", SYNTH_CLASSES)
    test = VOCDataset(synth_root, "test", SYNTH_CLASSES)
    assert (len(trainval), len(test)) == (TRAINVAL, TEST)
    assert trainval.dropped == [] and trainval.unknown_objects == 0
    assert set(VOCDataset(synth_root, "trainval").classes) <= set(SYNTH_CLASSES)
    for r in trainval.records:
        assert (r.width, r.height) == (synthetic.IMAGE_W, synthetic.IMAGE_H)
        assert r.image_path.suffix == ".jpg" and r.image_path.is_file()
        assert (r.boxes[:, :2] >= 0).all()
        assert (r.boxes[:, 2] <= r.width - 1).all() and (r.boxes[:, 3] <= r.height - 1).all()


def test_classes_difficult_and_truncated_present(synth_root: Path) -> None:
    ds = VOCDataset(synth_root, "trainval", SYNTH_CLASSES)
    labels = np.concatenate([r.labels for r in ds.records])
    assert set(labels.tolist()) == set(range(1, len(SYNTH_CLASSES) + 1))
    difficult = np.concatenate([r.difficult for r in ds.records])
    assert 0 < difficult.sum() < len(difficult) / 2
    xml = "".join(p.read_text() for p in (synth_root / "Annotations").iterdir())
    assert "<truncated>1</truncated>" in xml and "<truncated>0</truncated>" in xml
    assert "<difficult>1</difficult>" in xml


def test_object_sizes(synth_root: Path) -> None:
    ds = VOCDataset(synth_root, "trainval", SYNTH_CLASSES)
    boxes = np.concatenate([r.boxes for r in ds.records])
    easy = ~np.concatenate([r.difficult for r in ds.records])
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
    assert side.max() <= 152
    # Whole, visible objects span 16..150 px; cut or hidden ones are difficult (or smaller).
    assert side[easy].min() >= 12
    assert side.max() >= 60 and side[easy].min() <= 40  # both small and large ones occur


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(UserError, match="full"):
        generate_synthetic(tmp_path / "full", 2, 1, show_progress=False)
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    generate_synthetic(tmp_path / "empty", 2, 1, show_progress=False)
    assert (tmp_path / "empty" / "ImageSets" / "Main" / "test.txt").read_text() == "000002\n"


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    real = synthetic.render_image

    def render(seed: int, index: int):
        if index == 2:
            raise KeyboardInterrupt
        return real(seed, index)

    monkeypatch.setattr(synthetic, "render_image", render)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "s", 4, 1, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_default_copy_is_generated_once_in_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path))
    calls = []
    real = synthetic.generate_synthetic

    def small(out: Path, **_: object) -> Path:
        calls.append(out)
        return real(out, trainval=2, test=1, show_progress=False)

    monkeypatch.setattr(synthetic, "generate_synthetic", small)
    root = resolve_data_root("synth")
    assert root == tmp_path / f"synth-{synthetic.SYNTH_VERSION}"
    assert resolve_data_root("synth") == root
    assert calls == [root]
    assert len(VOCDataset(root, "test", SYNTH_CLASSES)) == 1


def test_resolve_data_root_checks_the_folder(tmp_path: Path) -> None:
    assert resolve_data_root(str(tmp_path)) == tmp_path
    with pytest.raises(UserError, match="data root does not exist") as info:
        resolve_data_root(str(tmp_path / "missing"))
    assert str(tmp_path / "missing") in str(info.value)
