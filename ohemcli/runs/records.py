"""``read_run``: a finished run folder as one value (``Run``), the one way every reader opens it.

The file names come from :class:`ohemcli.runs.paths.RunPaths`; this module only parses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ohemcli.errors import UserError, quote
from ohemcli.fileio import read_json, read_text
from ohemcli.runs.paths import RunPaths
from ohemcli.runs.settings import setting_hash
from ohemcli.runs.stability import RunStability, assess_run, last_quarter_health
from ohemcli.runs.summary_fields import is_number

EVAL_COLUMNS = ["iter", "mAP", "train_seconds", "mining_seconds", "wall_seconds"]
HEALTH_COLUMNS = ("p_true_fg", "p_top_bg")  # metrics.jsonl: the classifier's health per line


@dataclass(frozen=True)
class Run:
    """A finished run: its summary, config, eval history, training log and final evaluation."""

    paths: RunPaths
    summary: dict[str, Any]  # summary.json
    config: dict[str, Any]  # config.yaml as a plain dict ({} when absent)
    evals: pd.DataFrame  # one row per evaluation during training (EVAL_COLUMNS, by iter)
    metrics: pd.DataFrame  # one row per logged iteration (metrics.jsonl), by iter
    eval_metrics: dict[str, Any] | None  # eval/metrics.json, None when absent

    @property
    def name(self) -> str:
        return self.paths.root.name

    @property
    def sampler(self) -> str:
        return str(self.summary.get("sampler"))

    @property
    def seed(self) -> int:
        return int(self.summary.get("seed", 0))

    @property
    def setting(self) -> str:
        """Hash of the config without sampler name and seed (equal across one comparison)."""
        return setting_hash(self.config)

    @property
    def lr_steps(self) -> list[Any]:
        """The run's lr drops from its config (empty when it does not say)."""
        steps = (self.config.get("train") or {}).get("lr_steps") or []
        return list(steps) if isinstance(steps, list) else []

    @property
    def eval_protocol(self) -> dict[str, Any] | None:
        """How detections were filtered for the final mAP (None when the run does not say)."""
        found = self.summary.get("eval_protocol") or (self.eval_metrics or {}).get("eval_protocol")
        return dict(found) if found else None


def read_log(path: Path) -> pd.DataFrame:
    """A JSONL log by ``iter``; after a resume the last line of a repeated iteration wins."""
    if not path.is_file():
        return pd.DataFrame(columns=["iter"])
    lines = []
    for k, text in enumerate(read_text(path).splitlines(), start=1):
        if text.strip():
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                raise UserError(f"{path}:{k}: not a JSON line") from None
            if not isinstance(line, dict):
                raise UserError(f"{path}:{k}: expected a JSON object, found {type(line).__name__}")
            lines.append(line)
    df = pd.DataFrame(lines)
    if df.empty or "iter" not in df:
        return pd.DataFrame(columns=["iter"])
    return df.drop_duplicates("iter", keep="last").sort_values("iter").reset_index(drop=True)


def _read_mapping(path: Path) -> dict[str, Any]:
    """A JSON file that must hold one object."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _check_log_numbers(path: Path, log: pd.DataFrame, columns: Sequence[str]) -> None:
    """Every value of ``columns`` in a JSONL log is a number or null."""
    for col in columns:
        if col in log:
            bad = [v for v in log[col] if v is not None and not is_number(v)]
            if bad:
                raise UserError(f"{path}: {col} = {quote(bad[0])} is not a number")


def log_stability(
    evals: pd.DataFrame,
    metrics: pd.DataFrame,
    iters: int,
    final_map: float | None,
    lr_steps: Sequence[Any] = (),
) -> RunStability:
    """``assess_run`` over a run's evaluation log and training log (frames as :func:`read_log`
    gives them); ``final_map`` is added as the last evaluation when the log stops before
    ``iters`` (or holds none). ``lr_steps``: the run's lr drops (the last one inside the run
    opens the settled window)."""
    history = list(zip(evals["iter"], evals["mAP"], strict=True)) if "mAP" in evals else []
    last = max((float(i) for i, _ in history), default=0.0)
    if final_map is not None and (not history or last < iters):
        history.append((iters, float(final_map)))
    losses = list(zip(metrics["iter"], metrics["loss"], strict=True)) if "loss" in metrics else []
    drops = [int(s) for s in lr_steps if is_number(s) and 0 < s < iters]
    columns = [metrics[c] if c in metrics else [None] * len(metrics) for c in HEALTH_COLUMNS]
    health = last_quarter_health(list(zip(metrics["iter"], *columns, strict=True)), iters)
    return assess_run(history, losses, iters, max(drops) if drops else None, health)


def read_run(run_dir: str | Path) -> Run:
    """A finished run folder (one with summary.json); a missing or broken file is a UserError."""
    paths = RunPaths(Path(run_dir))
    if not paths.summary.is_file():
        raise UserError(f"{paths.summary}: missing; {paths.root} is not a finished run folder")
    summary = paths.read_summary()
    config: dict[str, Any] = {}
    if paths.config.is_file():
        try:
            config = yaml.safe_load(read_text(paths.config)) or {}
        except yaml.YAMLError:
            raise UserError(f"{paths.config}: not valid YAML") from None
    evals = read_log(paths.evals)
    _check_log_numbers(paths.evals, evals, EVAL_COLUMNS)
    for col in EVAL_COLUMNS:
        if col not in evals:
            evals[col] = pd.Series(dtype=float)
    eval_metrics = _read_mapping(paths.eval_metrics) if paths.eval_metrics.is_file() else None
    if not isinstance(config, dict):
        raise UserError(f"{paths.config}: expected a mapping, found {type(config).__name__}")
    metrics = read_log(paths.metrics)
    _check_log_numbers(paths.metrics, metrics, ("iter", "loss", *HEALTH_COLUMNS))
    return Run(paths, summary, config, evals, metrics, eval_metrics)
