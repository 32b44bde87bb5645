"""The settings that an override implies: what choosing a key means for the keys beside it.

Anchored on what a user means rather than on what they typed: another backbone comes with its own
weights and frozen layers, a named test protocol with its limits, and limits of one's own make the
protocol "custom". The command line and :func:`ohemcli.config.load_config` both go through
:func:`implied`, so a Python caller gets what a CLI user gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ohemcli.config.schema import (
    BACKBONE_WEIGHTS,
    DEFAULT_FROZEN_CONVS,
    TEST_PROTOCOLS,
    ExperimentConfig,
)
from ohemcli.errors import UserError


class _Null:
    """The override value that sets a key to null (None itself means: not given)."""

    def __repr__(self) -> str:
        return "NULL"


NULL: Any = _Null()

LIMIT_KEYS = ("eval.max_dets", "eval.score_thresh")


def _another_backbone(base: ExperimentConfig, out: dict[str, Any]) -> None:
    """A backbone other than ``base``'s brings its own weights (:data:`BACKBONE_WEIGHTS`), unless
    the overrides or ``base`` name weights (base's source may not fit the new backbone), and its
    own frozen layers (:data:`DEFAULT_FROZEN_CONVS`: base's count is of another trunk's layers)."""
    chosen = out.get("model.backbone")
    if chosen not in BACKBONE_WEIGHTS or chosen == base.model.backbone:
        return
    told = {"model.pretrained", "model.weights"} & out.keys() or base.model.weights
    if not told:
        out["model.pretrained"] = BACKBONE_WEIGHTS[chosen]
    out.setdefault("model.frozen_convs", DEFAULT_FROZEN_CONVS[chosen])


def _protocol_and_its_limits(out: dict[str, Any], spelled: Mapping[str, str]) -> None:
    """A named protocol sets the limits it fixes; limits of one's own make it "custom"; both at
    once is one line naming how each was given."""
    limits = [k for k in LIMIT_KEYS if k in out]
    if "eval.protocol" in out and limits:
        names = "/".join(spelled.get(k, k) for k in limits)
        raise UserError(
            f"{spelled.get('eval.protocol', 'eval.protocol')} and {names}: give one "
            "(a named protocol fixes its limits)"
        )
    if limits:
        out["eval.protocol"] = "custom"
    name = out.get("eval.protocol")
    if name in TEST_PROTOCOLS:
        out.update(dict(zip(LIMIT_KEYS, TEST_PROTOCOLS[name], strict=True)))


def implied(
    base: ExperimentConfig,
    overrides: Mapping[str, Any],
    spelled: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``overrides`` (dotted keys, laid over ``base``) with the settings they imply added.

    - ``model.backbone`` other than base's: ``model.pretrained`` its own weights unless weights
      are named, and ``model.frozen_convs`` its own count unless given;
    - ``eval.protocol`` with fixed limits: ``eval.max_dets`` and ``eval.score_thresh``;
    - ``eval.max_dets`` or ``eval.score_thresh``: ``eval.protocol`` "custom".

    ``spelled`` maps a key to how the user gave it (``--test-protocol``) for the error of a
    protocol given with limits. Keys the overrides give are never replaced.
    """
    out = {k: v for k, v in overrides.items() if v is not None}
    _another_backbone(base, out)
    _protocol_and_its_limits(out, spelled or {})
    return out
