"""kill -9 of ``ohem train`` with DataLoader workers, then ``--resume`` within one second: the lock
is free at once (it dies with the process, not with its forked workers) and the run continues to
the same weights as one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import tiny_voc_root

REPO = Path(__file__).resolve().parents[2]
ITERS = 20


# faster-rcnn: the RPN's weights and its anchor sampling's RNG draws, and hnm's pool of boxes
# (mined every 5 iterations, every negative a false positive), must resume as they were.
FASTER = {
    "model": {"detector": "faster-rcnn", "rpn_pre_nms_train": 200, "rpn_post_nms_train": 60,
              "rpn_pre_nms_test": 200, "rpn_post_nms_test": 30},
    "sampler": {"name": "hnm", "mine_every": 5, "hnm_fp_thresh": 0.0, "hnm_pool_per_image": 4},
}  # fmt: skip


def _config(tmp: Path, detector: str = "fast-rcnn") -> Path:
    raw = {
        "data": {"root": str(tiny_voc_root(tmp, 4)), "scale": 64, "max_size": 64,
                 "max_proposals": 40, "workers": 1},
        "model": {"backbone": "tiny", "head_dim": 16},
        "sampler": {"name": "ohem", "batch_rois": 8},
        "train": {"iters": ITERS, "lr_steps": [], "log_every": 1, "checkpoint_every": 1,
                  "eval_points": 1},
    }  # fmt: skip
    if detector == "faster-rcnn":
        for section, keys in FASTER.items():
            raw[section].update(keys)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train(cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["OHEM_CACHE"] = str(out.parent / "cache")  # where the test computed the proposals
    args = [sys.executable, "-m", "ohemcli", "train", "--config", str(cfg), "--out", str(out)]
    return subprocess.Popen(
        [*args, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["fast-rcnn", "faster-rcnn"])
def test_kill_9_then_resume_within_a_second_continues_bit_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detector: str
) -> None:
    from ohemcli.config import load_config
    from ohemcli.data.splits import prepare_data

    cfg = _config(tmp_path, detector)
    # Proposals computed once here, so that the three processes only load them.
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "cache"))
    prepare_data(load_config(cfg), False)
    straight = _train(cfg, tmp_path / "straight")
    killed = _train(cfg, tmp_path / "killed")
    try:
        metrics = tmp_path / "killed" / "metrics.jsonl"
        while _lines(metrics) < 3 and killed.poll() is None:
            time.sleep(0.01)
        assert killed.poll() is None, killed.stderr.read().decode()[-2000:]
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        killed_at = time.monotonic()
        resumed = _train(cfg, tmp_path / "killed", "--resume")
        assert time.monotonic() - killed_at < 1.0
        assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]
        assert straight.wait(timeout=600) == 0, straight.stderr.read().decode()[-2000:]
    finally:
        for proc in (straight, killed):
            proc.kill()
            proc.wait()
    stopped = json.loads(metrics.read_text().splitlines()[-1])["iter"]
    assert stopped == ITERS
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert a["state"]["iteration"] == b["state"]["iteration"] == ITERS
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    if detector == "faster-rcnn":
        assert any(name.startswith("rpn.") for name in a["model"])
        pools = a["sampler"]["box_pool"], b["sampler"]["box_pool"]
        assert pools[0] and pools[0].keys() == pools[1].keys()
        for image, entry in pools[0].items():
            assert torch.equal(entry["boxes"], pools[1][image]["boxes"]), image
    summary = [
        json.loads((tmp_path / d / "summary.json").read_text()) for d in ("straight", "killed")
    ]
    assert summary[0]["mAP"] == summary[1]["mAP"]
