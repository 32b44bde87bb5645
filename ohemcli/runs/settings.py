"""What makes two runs comparable: their config less the sampler name and the seed."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config (as a plain dict) without what a compare varies per run: sampler name and seed.

    Two runs, or a compare folder and a new request, have the same setting when these agree.
    """
    c = json.loads(json.dumps(config))
    c.get("sampler", {}).pop("name", None)
    c.get("train", {}).pop("seed", None)
    return c


def setting_hash(config: dict[str, Any]) -> str:
    """Short hash of :func:`comparable_config` (equal for runs of one comparison)."""
    text = json.dumps(comparable_config(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]
