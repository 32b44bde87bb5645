"""Command-line options onto dotted config keys, and the config a command line builds.

``ohem train``, ``compare`` and ``bench`` hand their parameters (``ctx.params``) and their
``--set KEY=VALUE`` items to :func:`build_config`. Each parameter that
:data:`~ohemcli.cli.aliases.OPTION_KEYS` names and the user gave (not None) sets its config key,
and each ``--set`` item its key, over the YAML file or preset of ``--config``; what they imply
(another backbone's weights, a protocol's limits) comes from :func:`ohemcli.config.implied`. The
other parameters (``--out``, ``--seeds``, ...) are the command's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from ohemcli.cli.aliases import OPTION_KEYS, option_name
from ohemcli.config import NULL, ExperimentConfig, parse_config, with_absolute_paths
from ohemcli.config.keys import check_key
from ohemcli.errors import UserError, quote
from ohemcli.presets import config_source, preset_for
from ohemcli.samplers import SAMPLERS
from ohemcli.samplers.plugins import is_plugin_name


def _plain(value: Any) -> Any:
    """A parameter's value as the config holds it: an Enum's value, a path as text."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def given_overrides(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``--option`` -> ``{dotted key: value}`` for every parameter in the table that was given."""
    return {
        option_name(name): {OPTION_KEYS[name]: _plain(value)}
        for name, value in params.items()
        if name in OPTION_KEYS and value is not None
    }


def parse_set(item: str) -> tuple[str, Any]:
    """``"sampler.ohem_nms_iou=0.5"`` -> ``("sampler.ohem_nms_iou", 0.5)``: a known key and a
    YAML value (``null`` sets null). Errors are one line naming the item or the key."""
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise UserError(f"--set: expected KEY=VALUE such as train.iters=100, got {quote(item)}")
    check_key(key, "--set")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not YAML"
        raise UserError(f"--set {key}: {quote(text)} is not a YAML value ({problem})") from None
    return key, NULL if value is None else value


def set_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set`` items as ``{"--set KEY": {KEY: value}}``, in order (a later one wins)."""
    given: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = parse_set(item)
        given.pop(f"--set {key}", None)
        given[f"--set {key}"] = {key: value}
    return given


def cuda_available() -> bool:
    """Whether this machine has CUDA (a function so that tests can choose)."""
    import torch

    return torch.cuda.is_available()


def default_preset(data: str | None, device: Any, detector: Any = None) -> str:
    """The preset for a command line without --config, by data set, device and detector
    (:func:`ohemcli.presets.preset_for`); for data other than synth, one line on stderr says
    which and how to pick the other."""
    detector = _plain(detector)
    if data in (None, "synth"):
        return preset_for(data, False, detector)
    device = _plain(device)
    on_cuda = device == "cuda" or (device in (None, "auto") and cuda_available())
    chosen = preset_for(data, on_cuda, detector)
    other = preset_for(data, not on_cuda, detector)
    from ohemcli.progress import err_console

    where = "CUDA" if on_cuda else "no CUDA"
    err_console.print(
        f"{where}: using preset {chosen}; pass --config {other} for the "
        f"{'CPU' if on_cuda else 'paper GPU'} setting",
        highlight=False,
        soft_wrap=True,
    )
    return chosen


def config_text(config: str | None, params: Mapping[str, Any]) -> tuple[str, str]:
    """The YAML text named by ``--config`` (or the default preset) and the name errors give it."""
    if config is None:
        preset = default_preset(params.get("data"), params.get("device"), params.get("detector"))
        return config_source(preset)
    return config_source(config)


def _check_sampler_name(name: Any, where: str) -> None:
    """A built-in sampler's name or a plugin's (an import path or an entry point)."""
    if not isinstance(name, str) or name not in SAMPLERS and not is_plugin_name(name):
        raise UserError(
            f"{where}: sampler.name = {quote(name)} is not allowed; "
            f"expected one of {', '.join(SAMPLERS)} or a plugin (pkg.module:Class)"
        )


def _check_eval_points(cfg: ExperimentConfig, given: dict[str, dict[str, Any]]) -> None:
    """Evaluations asked for at the command line fit in the iterations (one per iteration)."""
    for source, keys in given.items():
        points = keys.get("train.eval_points")
        if isinstance(points, int) and points > cfg.train.iters:
            raise UserError(
                f"{source}: {quote(points)} is more than the {cfg.train.iters} iterations "
                "(train.iters); give at most that many"
            )


def build_config(
    config: str | None, params: Mapping[str, Any], sets: Sequence[str] = ()
) -> ExperimentConfig:
    """The YAML (or preset) with every given option and ``--set`` item laid over it, checked and
    with absolute paths.

    ``params`` maps a command's parameter names to their values (``ctx.params``); those outside
    :data:`OPTION_KEYS` are ignored. ``sets`` are ``KEY=VALUE`` items, applied after the options.
    A value out of range is one line naming the YAML file and key, or the option that set it.
    """
    text, source = config_text(config, params)
    base = parse_config(text, source)
    _check_sampler_name(base.sampler.name, source)
    given = {**given_overrides(params), **set_overrides(sets)}
    for option, keys in given.items():
        if "sampler.name" in keys:
            _check_sampler_name(keys["sampler.name"], option)
        where = "--set" if option.startswith("--set ") else option  # the message names the key
        parse_config(text, where, keys, pairs=False)  # each alone, so an error names it
    overrides: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for option, keys in given.items():
        overrides.update(keys)
        spelled.update(dict.fromkeys(keys, option))
    cfg = parse_config(text, "command line", overrides, spelled=spelled)
    _check_eval_points(cfg, given)
    return with_absolute_paths(cfg)


def given_keys(params: Mapping[str, Any], sets: Sequence[str] = ()) -> set[str]:
    """The config keys that the options in ``params`` and the ``--set`` items give."""
    given = {**given_overrides(params), **set_overrides(sets)}
    return {key for keys in given.values() for key in keys}
