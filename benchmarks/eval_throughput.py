"""Test images per second of the evaluation, now against the earlier detection loop.

    python benchmarks/eval_throughput.py [--config synth_tiny] [--repeats 3] [--run RUN]

Loads the preset's (or YAML's) test split with its cached proposals and a model (the preset's
initial weights, or a run folder's checkpoint with ``--run``), then times a whole evaluation
(``evaluate_model`` with its files written to a temporary folder) with the current loop and with
``tests.reference_eval.reference_evaluate_model`` (the code before issue 26), alternately, and
prints the median images/s of each and their ratio. Every repeat checks that the two wrote
byte-identical files. It also prints where one image's time goes (decoding and resizing, trunk,
RoI pooling, head, post-processing with NMS), timed image by image without the loader.

The machine's load moves these figures: compare the two columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reference_eval

from ohemcli.config import input_norm, load_config  # noqa: E402
from ohemcli.data.batching import TestImages, collate  # noqa: E402
from ohemcli.data.splits import load_split  # noqa: E402
from ohemcli.evaluation import evaluate as E  # noqa: E402
from ohemcli.model.fast_rcnn import build_model, rois_with_batch_index  # noqa: E402
from ohemcli.presets import load_preset, preset_names  # noqa: E402
from tests.reference_eval import reference_evaluate_model  # noqa: E402


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def timed_evaluation(model, cfg, split, evaluate, folder: Path) -> float:
    """Seconds of one whole evaluation by ``evaluate`` (an ``evaluate_model``)."""
    start = time.perf_counter()
    evaluate(model, cfg, split, torch.device("cpu"), folder, None, False)
    return time.perf_counter() - start


def parts_ms(model, cfg, split, images: int) -> dict[str, float]:
    """Mean ms per image of each part of detection, over the first ``images`` test images."""
    data = TestImages(
        split.dataset, split.proposals, cfg.data.scale, cfg.data.max_size, input_norm(cfg.model)
    )
    total = dict.fromkeys(("load", "trunk", "pool", "head", "post"), 0.0)
    n = min(images, len(data))
    model.eval()
    with torch.inference_mode():
        for i in range(n):
            t0 = time.perf_counter()
            batch = collate([data[i]])
            sample = batch.samples[0]
            t1 = time.perf_counter()
            features = model.features(batch.images)
            t2 = time.perf_counter()
            pooled = model.pool(features, rois_with_batch_index([sample.rois]))
            t3 = time.perf_counter()
            x = model.head(pooled)
            logits, deltas = model.cls_score(x), model.bbox_pred(x)
            t4 = time.perf_counter()
            probs, deltas = logits.softmax(dim=1), deltas.view(len(deltas), -1, 4)
            size = tuple(sample.image.shape[1:])
            model._postprocess(sample.rois, probs, deltas, cfg.eval, size)
            t5 = time.perf_counter()
            for key, dt in zip(total, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                total[key] += dt
    return {k: 1000 * v / n for k, v in total.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="synth_tiny", help="a preset or a YAML file")
    parser.add_argument("--run", type=Path, help="a run folder: its checkpoint and config")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.run is not None:
        model, cfg, _ = E.load_run_model(args.run, torch.device("cpu"))
    else:
        is_preset = args.config in preset_names()
        cfg = load_preset(args.config) if is_preset else load_config(args.config)
    split = load_split(cfg, "test", show_progress=False)
    if args.run is None:
        model = build_model(cfg, split.dataset.num_classes, torch.device("cpu"))
    n = len(split.dataset)
    now, then = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            a, b = Path(tmp) / f"now{r}", Path(tmp) / f"then{r}"
            first, second = (a, b) if r % 2 == 0 else (b, a)  # alternate which goes first
            for folder in (first, second):
                evaluate = E.evaluate_model if folder == a else reference_evaluate_model
                seconds = timed_evaluation(model, cfg, split, evaluate, folder)
                (now if folder == a else then).append(n / seconds)
            if _files(a) != _files(b):
                raise SystemExit("the two loops wrote different files")
    parts = parts_ms(model, cfg, split, min(n, 50))
    name = args.config if args.run is None else args.run
    threads = torch.get_num_threads()
    print(f"{name}: {n} test images, {threads} torch thread(s), {args.repeats} alternated repeats")
    fast, slow = statistics.median(now), statistics.median(then)
    print(f"  evaluation images/s  now {fast:.1f}  before {slow:.1f}  ratio {fast / slow:.2f}x")
    print("  (the files of every repeat byte-identical)")
    print("  per image (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
