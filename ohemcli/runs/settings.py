"""What makes two runs comparable (their config less the sampler name and the seed), and a
compare folder's record of it, ``compare.yaml``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ohemcli.config import BUDGET_KEYS, METHOD_KEYS, ExperimentConfig, config_to_dict
from ohemcli.errors import UserError
from ohemcli.fileio import load_yaml, read_text


def _fill_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Add the keys of ``defaults`` that ``config`` lacks, level by level (in place)."""
    for key, value in defaults.items():
        if key not in config:
            config[key] = value
        elif isinstance(value, dict) and isinstance(config[key], dict):
            _fill_defaults(config[key], value)


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config (as a plain dict) without what a compare varies per run: sampler name and seed.

    Two runs, or a compare folder and a new request, have the same setting when these agree.
    A key that the config lacks counts as its default: a folder written before the key existed
    (a sampler's new option, say) still compares equal to a request that leaves it alone.
    """
    c = json.loads(json.dumps(config))
    if c:
        _fill_defaults(c, json.loads(json.dumps(config_to_dict(ExperimentConfig()))))
    c.get("sampler", {}).pop("name", None)
    c.get("train", {}).pop("seed", None)
    c.get("train", {}).pop("tensorboard", None)  # event files or not: the runs' numbers agree
    # What a sampler's regime sets differs between its runs by design (samplers.regime): the
    # method's keys always, the budget under the reference regime.
    common = c.get("sampler", {}).get("regime") == "common"
    varied = [*METHOD_KEYS, *(() if common else BUDGET_KEYS)]
    for dotted in varied:
        section, key = dotted.split(".", 1)
        if isinstance(c.get(section), dict):
            c[section].pop(key, None)
    return c


def _at(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of nested dicts (None where a level is missing)."""
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def first_difference(
    saved: Any, new: Any, first: Sequence[str] = (), prefix: str = ""
) -> tuple[str, Any, Any] | None:
    """The first dotted key whose values differ between two configs (plain nested dicts), with
    both values (None where a side lacks the key), or None when they are equal.

    The keys of ``first`` are checked before the rest, so that a refusal names what matters
    most; then the keys in the saved order, then the keys only ``new`` has.
    """
    for dotted in first:
        if _at(saved, dotted) != _at(new, dotted):
            return dotted, _at(saved, dotted), _at(new, dotted)
    if isinstance(saved, dict) and isinstance(new, dict):
        for key in [*saved, *(k for k in new if k not in saved)]:
            found = first_difference(saved.get(key), new.get(key), prefix=f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if saved == new else (prefix.rstrip("."), saved, new)


def setting_hash(config: dict[str, Any]) -> str:
    """Short hash of :func:`comparable_config` (equal for runs of one comparison)."""
    text = json.dumps(comparable_config(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def read_settings(path: Path) -> dict[str, Any]:
    """A compare folder's ``compare.yaml``; a broken file is one line naming it."""
    text = read_text(path)
    try:
        saved = load_yaml(text, path)
    except UserError as exc:  # invalid YAML, or an alias bomb
        raise UserError(f"{exc}; remove it or choose another --out") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path}: not a compare settings file; remove it or choose another --out")
    if not isinstance(saved.get("config", {}), dict):
        raise UserError(f"{path}: its config is not a mapping; remove it or choose another --out")
    return saved
