"""Comma lists of the command line: samplers, seeds and class names."""

from __future__ import annotations

from ohemcli.config_rules import check_value
from ohemcli.errors import UserError, quote


def parse_samplers(text: str) -> list[str]:
    """``"fixed,hnm,ohem"`` -> ``["fixed", "hnm", "ohem"]`` (names are checked by the caller)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``: a comma list of seeds (not a count)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(
            f"--seeds: expected a comma list of integers such as 1,2,3, got {quote(text)}"
        ) from None
    if not seeds:
        raise UserError("--seeds: give at least one seed, e.g. --seeds 1")
    for seed in seeds:  # the rule of train.seed, as for train --seed
        allowed = check_value("train.seed", seed)
        if allowed is not None:
            raise UserError(
                f"--seeds: train.seed = {quote(seed)} is not allowed; expected {allowed}"
            )
    return seeds


def parse_classes(classes: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list of distinct names (None when not given)."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--classes: expected distinct comma-separated names, got {quote(classes)}")
    return names
