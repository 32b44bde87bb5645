"""Reproduce ohemcli/weights/tiny_synth.pt: the tiny backbone pretrained on synthetic-shape crops.

    python3 scripts/pretrain_tiny.py                 # writes ohemcli/weights/tiny_synth.pt
    python3 scripts/pretrain_tiny.py --out /tmp/x.pt --images 200 --epochs 1

The images come from generator seed 1000 (the demo's data set uses seed 0), so no demo train or
test image is seen. Deterministic for a given machine and thread count; see scripts/pretrain.py.
Weights are stored as float16 to keep the shipped file small.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ohemcli.fileio import atomic_write_bytes  # noqa: E402
from scripts.pretrain import PretrainConfig, pretrain_tiny  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "ohemcli" / "weights" / "tiny_synth.pt"


def main() -> None:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--images", type=int, default=defaults.images)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args()
    cfg = PretrainConfig(images=args.images, epochs=args.epochs, seed=args.seed)
    start = time.perf_counter()
    state, accuracy = pretrain_tiny(cfg, show_progress=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    buf = io.BytesIO()
    torch.save(half, buf)
    atomic_write_bytes(args.out, buf.getvalue())
    print(
        f"{args.out}: {len(buf.getvalue()) / 1e3:.0f} kB, last-epoch crop accuracy {accuracy:.3f}, "
        f"{time.perf_counter() - start:.0f} s ({cfg})"
    )


if __name__ == "__main__":
    main()
