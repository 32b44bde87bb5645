"""Every scalar config key as a hidden option of the commands that take a config.

``--ohem-nms-iou 0.5`` is ``--set sampler.ohem_nms_iou=0.5``: an option is named after its key's
last part (underscores as dashes), except the three in :data:`RENAMED`. The options are derived
from the schema, so a new config key is an option of ``train``, ``compare`` and ``bench`` with no
line here; they are hidden (``--help`` shows the daily ones and ``--set``), and a command declares
only its first-class options. :func:`config_options` adds the rest to a command's signature.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Collection
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from ohemcli.config.keys import config_keys
from ohemcli.config_rules import RULES, Choice, OrNone

F = TypeVar("F", bound=Callable[..., Any])

# Options whose name is not their key's last part: what people call the thing.
RENAMED = {"data": "data.root", "sampler": "sampler.name", "test_protocol": "eval.protocol"}
_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def _scalar_type(type_text: str) -> type | None:
    """``"int | None"`` -> int; None for lists (``--set`` takes those, as YAML)."""
    parts = [p.strip() for p in type_text.split("|") if p.strip() != "None"]
    return _SCALARS.get(parts[0]) if len(parts) == 1 else None


def option_keys() -> dict[str, str]:
    """Parameter name -> config key, for every scalar key whose last part no other key has."""
    renamed = set(RENAMED.values())
    last_parts = [k.rpartition(".")[2] for k in (info.key for info in config_keys())]
    table = {
        info.key.rpartition(".")[2]: info.key
        for info in config_keys()
        if _scalar_type(info.type) is not None
        and info.key not in renamed
        and last_parts.count(info.key.rpartition(".")[2]) == 1
    }
    return {**table, **RENAMED}


OPTION_KEYS: dict[str, str] = option_keys()


def option_name(param: str) -> str:
    """How a parameter is spelled on the command line: ``ohem_nms_iou`` -> ``--ohem-nms-iou``."""
    return "--" + param.replace("_", "-")


def choice_enum(name: str, key: str) -> type[Enum]:
    """A ``str`` Enum of the values that the rule of config key ``key`` allows, in its order."""
    rule = RULES[key]
    if isinstance(rule, OrNone):  # null is for --set and the YAML, not an option
        rule = rule.inner
    if not isinstance(rule, Choice):
        raise TypeError(f"{key}: its rule is {type(rule).__name__}, not a Choice")
    choice = Enum(name, {value: value for value in rule.values}, type=str)  # type: ignore[misc]
    choice.__doc__ = f"The values of ``{key}`` (its rule in config_rules)."
    return choice


def _alias_annotation(param: str, key: str) -> Any:
    """The hidden option of ``key``: an on/off pair, a choice of its rule, or a typed value."""
    type_text = next(info.type for info in config_keys() if info.key == key)
    value_type: Any = _scalar_type(type_text)
    rule = RULES[key]
    inner = rule.inner if isinstance(rule, OrNone) else rule
    decl = option_name(param)
    if value_type is bool:
        decl = f"{decl}/--no-{decl[2:]}"
    elif isinstance(inner, Choice):
        value_type = choice_enum(param.title().replace("_", ""), key)
    option = typer.Option(decl, hidden=True, help=f"Alias of --set {key}=VALUE.")
    return Annotated[value_type | None, option]


def config_options(exclude: Collection[str] = ()) -> Callable[[F], F]:
    """Give a command every key of :data:`OPTION_KEYS` as a hidden option, less the keys in
    ``exclude`` and the parameters it declares itself; their values reach the command only
    through ``ctx.params`` (read by ``build_config``), not as arguments."""

    def wrap(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = signature.parameters
        hidden = [
            inspect.Parameter(
                param,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=_alias_annotation(param, key),
            )  # fmt: skip
            for param, key in OPTION_KEYS.items()
            if key not in exclude and param not in own
        ]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **{k: v for k, v in kwargs.items() if k in own})

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.values()]
        command.__signature__ = signature.replace(parameters=[*params, *hidden])  # type: ignore[attr-defined]
        command.__annotations__ = {
            **typing.get_type_hints(func, include_extras=True),
            **{p.name: p.annotation for p in hidden},
        }
        return typing.cast(F, command)

    return wrap


__all__ = ["OPTION_KEYS", "RENAMED", "choice_enum", "config_options", "option_keys", "option_name"]
