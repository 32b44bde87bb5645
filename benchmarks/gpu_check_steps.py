"""The Python steps of benchmarks/gpu_check.sh: its config, data, checks and final table.

    python benchmarks/gpu_check_steps.py config PRESET OUT_YAML WEIGHTS
    python benchmarks/gpu_check_steps.py synth ROOT TRAINVAL TEST
    python benchmarks/gpu_check_steps.py bench-rows BENCH_JSON RESULTS
    python benchmarks/gpu_check_steps.py head-change CONFIG_YAML DATA DEVICE AMP OUT
    python benchmarks/gpu_check_steps.py summary-iters SUMMARY_JSON ITERS
    python benchmarks/gpu_check_steps.py table RESULTS

Every check prints one line and exits 1 when it fails; the shell script records the outcome.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import yaml

# Each timed bench row must have trained to a finite, positive loss.
ROW_KEYS = ("sampler", "amp", "iters", "s_per_iter", "peak_memory_mb", "final_loss")


def write_config(preset: str, out: str, weights: str) -> None:
    """The check's config: ``preset`` (a name or a YAML file) with evaluations off and, for
    VGG16, the pretrained weights the machine has (``weights``: caffe, torchvision or none)."""
    from ohemcli.cli.overrides import config_text

    text, _ = config_text(preset, {})
    cfg = yaml.safe_load(text) or {}
    cfg.setdefault("train", {}).update(eval_points=0, log_every=1, checkpoint_every=1000)
    if cfg.get("model", {}).get("backbone", "vgg16") == "vgg16" and weights:
        cfg.setdefault("model", {})["pretrained"] = weights
    Path(out).write_text(yaml.safe_dump(cfg))
    print(f"config: {preset} with {'model.pretrained ' + weights if weights else 'its weights'}")


def vgg16_weights() -> str:
    """caffe when its file is in the cache, torchvision when torch hub has it, else none."""
    import torch
    from torchvision.models import VGG16_Weights

    from ohemcli.model.caffe_vgg16 import caffe_vgg16_path

    if caffe_vgg16_path().is_file():
        return "caffe"
    name = os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
    cached = os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", name))
    return "torchvision" if cached else "none"


def synth(root: str, trainval: int, test: int) -> None:
    """A small synthetic VOC root (the check's data when no VOC root is given or found)."""
    from ohemcli.data.synthetic import generate_synthetic

    if not (Path(root) / "ImageSets").is_dir():
        generate_synthetic(Path(root), trainval=trainval, test=test, seed=0, show_progress=False)
    print(f"data: synthetic, {trainval} trainval + {test} test images in {root}")


def bench_rows(path: str, results: str) -> int:
    """One result line per bench row; a row with a missing, non-finite or zero loss fails."""
    failed = 0
    with open(results, "a") as out:
        for row in json.loads(Path(path).read_text()):
            if "sampler" not in row:
                continue
            loss = row.get("final_loss")
            ok = isinstance(loss, float) and math.isfinite(loss) and loss > 0
            failed += not ok
            detail = (
                f"{row['s_per_iter']:.4f} s/iter, peak {row['peak_memory_mb']:.0f} MiB, "
                f"loss {loss:.4f}, {row.get('host_syncs_per_iter', '-')} syncs/iter"
            )
            name = f"bench {row['sampler']} amp={row['amp']}"
            out.write(f"{name}\t{'ok' if ok else 'FAIL'}\t{detail}\n")
    return 1 if failed else 0


def head_change(config: str, data: str, device: str, amp: bool, out: str) -> int:
    """Two training steps change every weight of the RoI head (under AMP: the head trains)."""
    import torch

    from ohemcli.config import load_config
    from ohemcli.engine.train import Trainer

    overrides = {"data.root": data, "train.device": device, "train.amp": amp, "train.iters": 2}
    trainer = Trainer(load_config(config, overrides), Path(out), False, False)
    head = [*trainer.model.head.parameters(), *trainer.model.cls_score.parameters()]
    before = [p.detach().clone() for p in head]
    trainer.model.train()
    for i, batch in enumerate(trainer.batches()):
        trainer.step(batch)
        if i == 1:
            break
    same = sum(torch.equal(a, p.detach()) for a, p in zip(before, head, strict=True))
    print(f"head: {len(head) - same} of {len(head)} tensors changed (amp={amp})")
    return 1 if same else 0


def summary_iters(path: str, iters: int) -> int:
    """The run's summary.json says it trained to ``iters`` with a finite mAP."""
    summary = json.loads(Path(path).read_text())
    ok = summary.get("iters") == iters and math.isfinite(summary.get("mAP", float("nan")))
    print(f"{path}: iters {summary.get('iters')}, mAP {summary.get('mAP')}")
    return 0 if ok else 1


def table(results: str) -> int:
    """The check's one table (markdown); 1 when any line failed."""
    lines = [x.split("\t") for x in Path(results).read_text().splitlines() if x.strip()]
    print("| check | result | detail |\n|---|---|---|")
    for name, status, detail in lines:
        print(f"| {name} | {status} | {detail} |")
    failed = [n for n, s, _ in lines if s not in ("ok", "skipped")]
    skipped = sum(s == "skipped" for _, s, _ in lines)
    passed = len(lines) - len(failed) - skipped
    print(f"gpu_check: {passed} passed, {skipped} skipped, {len(failed)} failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """Dispatch one step (see the module docstring)."""
    step, args = argv[0], argv[1:]
    if step == "config":
        write_config(args[0], args[1], vgg16_weights() if args[2] == "auto" else args[2])
        return 0
    if step == "synth":
        synth(args[0], int(args[1]), int(args[2]))
        return 0
    if step == "bench-rows":
        return bench_rows(args[0], args[1])
    if step == "head-change":
        return head_change(args[0], args[1], args[2], args[3] == "--amp", args[4])
    if step == "summary-iters":
        return summary_iters(args[0], int(args[1]))
    if step == "table":
        return table(args[0])
    print(f"gpu_check_steps: unknown step {step!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
