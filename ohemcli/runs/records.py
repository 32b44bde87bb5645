"""``read_run``: a finished run folder as one value (``Run``), the one way every reader opens it.

The file names come from :class:`ohemcli.runs.paths.RunPaths`; this module only parses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ohemcli.errors import UserError, quote
from ohemcli.fileio import load_yaml, parse_json, read_json, read_text
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
        return int(self.summary["seed"])  # read_run refuses a summary without one

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
                line = parse_json(text, f"{path}:{k}")
            except UserError:
                raise UserError(f"{path}:{k}: not a JSON line") from None
            if not isinstance(line, dict):
                raise UserError(f"{path}:{k}: expected a JSON object, found {type(line).__name__}")
            step = line.get("iter")
            # Sorting and de-duplicating by iter needs numbers: a string or list would raise.
            if "iter" in line and not is_number(step):
                raise UserError(f"{path}:{k}: iter = {quote(step)} is not a number")
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


def _nested(path: Path, doc: dict[str, Any], keys: Sequence[str]) -> Any:
    """``doc[k1][k2]...``, None where a key is absent; a level that is not a mapping is refused."""
    value: Any = doc
    for depth, key in enumerate(keys):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(keys[:depth])
            raise UserError(f"{path}: {where} = {quote(value)} is not a mapping")
        value = value.get(key)
    return value


def check_eval_metrics(path: Path, doc: dict[str, Any]) -> None:
    """Refuse an ``eval/metrics.json`` whose fields that the report reads have the wrong type: the
    COCO entry (``coco``, or ``metrics.coco.coco`` under metric all) must be a mapping whose AP is
    a number or null, and ``eval_protocol`` a mapping."""
    keys: tuple[str, ...]
    for keys in (("coco",), ("metrics", "coco", "coco"), ("eval_protocol",)):
        _nested(path, doc, (*keys, "AP"))  # each level a mapping
    for keys in (("coco", "AP"), ("metrics", "coco", "coco", "AP")):
        value = _nested(path, doc, keys)
        if value is not None and not is_number(value):
            raise UserError(f"{path}: {'.'.join(keys)} = {quote(value)} is not a number or null")


# Summary fields that say which run it is, and the config key that must agree with each.
_IDENTITY = {"sampler": ("sampler", "name"), "seed": ("train", "seed")}


def check_identity(paths: RunPaths, summary: dict[str, Any], config: dict[str, Any]) -> None:
    """The summary names its sampler and seed, and they are the config's: a summary without a
    seed would count as seed 0, and an edited sampler would relabel the run in the report."""
    for key, (section, field) in _IDENTITY.items():
        if key not in summary:
            raise UserError(f"{paths.summary}: no {key}; cannot tell which run this is")
        part = config.get(section)
        wanted = part.get(field) if isinstance(part, dict) else None
        if wanted is not None and summary[key] != wanted:
            raise UserError(
                f"{paths.summary}: {key} = {quote(summary[key])}, but {paths.config} says "
                f"{section}.{field} = {quote(wanted)}; refused"
            )


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
            config = load_yaml(read_text(paths.config), paths.config) or {}
        except UserError:
            raise UserError(f"{paths.config}: not valid YAML") from None
    if not isinstance(config, dict):
        raise UserError(f"{paths.config}: expected a mapping, found {type(config).__name__}")
    check_identity(paths, summary, config)
    evals = read_log(paths.evals)
    _check_log_numbers(paths.evals, evals, EVAL_COLUMNS)
    for col in EVAL_COLUMNS:
        if col not in evals:
            evals[col] = pd.Series(dtype=float)
    eval_metrics = _read_mapping(paths.eval_metrics) if paths.eval_metrics.is_file() else None
    if eval_metrics is not None:
        check_eval_metrics(paths.eval_metrics, eval_metrics)
    metrics = read_log(paths.metrics)
    _check_log_numbers(paths.metrics, metrics, ("iter", "loss", *HEALTH_COLUMNS))
    return Run(paths, summary, config, evals, metrics, eval_metrics)
