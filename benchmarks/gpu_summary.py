"""Print the figures of ``gpu_check.sh`` as one markdown table.

    python benchmarks/gpu_summary.py OUT/bench--no-amp.json OUT/bench--amp.json
    python benchmarks/gpu_summary.py OUT/compare/runs/*/summary.json

A ``*.json`` list is ``ohem bench --json`` output (one row per sampler); a ``summary.json`` is a
finished run. Columns: s/iter (bench: median after warm-up, plus hnm's mining pass spread over
its epoch; run: mean after warm-up), peak memory (CUDA peak allocated, reset per sampler) and
the loss after the run's iterations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HEADER = "| source | sampler | amp | iters | s/iter | s/iter with mining | peak MiB | final loss |"


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def rows_of(path: Path) -> list[dict[str, Any]]:
    """Table rows from a bench JSON list or a run's ``summary.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):  # ohem bench --json
        return [
            {
                "source": "bench",
                "sampler": r["sampler"],
                "amp": r["amp"],
                "iters": r.get("iters"),
                "s_per_iter": r["s_per_iter"],
                "effective": r["effective_s_per_iter"],
                "peak": r["peak_memory_mb"],
                "loss": r.get("final_loss"),
            }
            for r in data
        ]
    config = path.parent / "config.yaml"
    amp = None
    if config.is_file():
        amp = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("train", {}).get("amp")
    return [
        {
            "source": f"run ({data['device']})",
            "sampler": data["sampler"],
            "amp": amp,
            "iters": data["iters"],
            "s_per_iter": data["s_per_iter"],
            "effective": data["total_seconds"] / max(1, data["iters"]),
            "peak": data["peak_memory_mb"],
            "loss": data.get("final_loss"),
        }
    ]


def table(paths: list[Path]) -> str:
    """The markdown table of every row of ``paths``."""
    lines = [HEADER, "|---" * (HEADER.count("|") - 1) + "|"]
    for path in paths:
        for r in rows_of(path):
            lines.append(
                f"| {r['source']} | {r['sampler']} | {r['amp']} | {_fmt(r['iters'], 'd')} "
                f"| {r['s_per_iter']:.4f} | {r['effective']:.4f} | {r['peak']:.0f} "
                f"| {_fmt(r['loss'], '.4f')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(table([Path(p) for p in sys.argv[1:]]))
