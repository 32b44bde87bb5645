"""Every dotted config key with its type, allowed range and default, derived from the schema and
:mod:`ohemcli.config_rules`; and the closest keys to a misspelt one."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from ohemcli.config.schema import SECTIONS, ExperimentConfig
from ohemcli.config_rules import RULES, Rule
from ohemcli.errors import UserError, quote


@dataclass(frozen=True)
class KeyInfo:
    """One config key: ``section.name``, its Python type as written, its rule and its default."""

    key: str
    type: str
    rule: Rule
    default: Any

    @property
    def allowed(self) -> str:
        """What the rule allows, in words (``config_rules``' ``describe()``)."""
        return self.rule.describe()

    def as_dict(self) -> dict[str, Any]:
        """The key as plain JSON values (a tuple default as a list)."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {"key": self.key, "type": self.type, "allowed": self.allowed, "default": default}


def config_keys() -> list[KeyInfo]:
    """Every key of :class:`ExperimentConfig`, in schema order."""
    defaults = ExperimentConfig()
    return [
        KeyInfo(
            f"{section}.{f.name}",
            str(f.type),
            RULES[f"{section}.{f.name}"],
            getattr(getattr(defaults, section), f.name),
        )
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    ]


KEYS: tuple[str, ...] = tuple(info.key for info in config_keys())


def closest_keys(key: str, count: int = 3) -> list[str]:
    """The known keys nearest to ``key`` in spelling; keys ending in its last part come first."""
    last = key.rpartition(".")[2]
    same_name = [k for k in KEYS if k.rpartition(".")[2] == last]
    near = difflib.get_close_matches(key, KEYS, n=count, cutoff=0.6)
    return list(dict.fromkeys([*same_name, *near]))[:count]


def check_key(key: str, where: str) -> str:
    """``key`` if it is a config key; else one line naming it and the closest known keys."""
    if key in KEYS:
        return key
    near = closest_keys(key)
    hint = f"; closest: {', '.join(near)}" if near else ""
    raise UserError(f"{where}: unknown config key {quote(key)}{hint} (ohem config keys lists all)")
