"""Loading a config: YAML text, type coercion, dotted-key overrides and the checks of every value.

Unknown keys and values of the wrong type are one-line errors naming the file and key. Overrides
(``{"train.iters": 10}``) are laid over the YAML together with the settings they imply
(:func:`ohemcli.config.derived.implied`), so that Python callers get what CLI users get.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ohemcli.config.derived import NULL, implied
from ohemcli.config.schema import (
    BACKBONE_WEIGHTS,
    PRETRAINED_SOURCES,
    SECTIONS,
    TEST_PROTOCOLS,
    ExperimentConfig,
    ModelConfig,
    input_norm,
    protocol_name,
)
from ohemcli.config_rules import check_value
from ohemcli.errors import UserError, quote
from ohemcli.fileio import load_yaml, read_text


def _legacy_model_values(values: dict[str, Any]) -> dict[str, Any]:
    """The model section with a boolean ``pretrained`` mapped to its source name."""
    flag = values.get("pretrained")
    if not isinstance(flag, bool):
        return values
    backbone = values.get("backbone", ModelConfig.backbone)
    if backbone not in BACKBONE_WEIGHTS:
        return values  # validate_config names the unknown backbone
    return {**values, "pretrained": BACKBONE_WEIGHTS[backbone] if flag else "none"}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field's type, converting lists to tuples and ints to floats."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"tuple": tuple, "str": str, "int": int, "float": float})  # noqa: S307
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {quote(value)}")
        item_type = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item_type, where) for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise UserError(f"{where}: {quote(value)} is too large for a float") from None
    if annotation is bool and not isinstance(value, bool):
        raise UserError(f"{where}: expected true or false, got {quote(value)}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{where}: expected an integer, got {quote(value)}")
    if annotation in (float, str) and not isinstance(value, annotation):
        raise UserError(f"{where}: expected {annotation.__name__}, got {quote(value)}")
    return value


def _build_section(cls: type, values: dict[str, Any], where: str) -> Any:
    """One section's dataclass from its mapping; unknown keys and wrong types are one line."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{where}: unknown key {quote(key)} (known: {', '.join(known)})")
        kwargs[key] = _coerce(value, known[key].type, f"{where}.{key}")
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Build a config from nested dicts (``{"train": {"iters": 10}}``); missing keys: defaults."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    sections = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            known = ", ".join(SECTIONS)
            raise UserError(f"{where}: unknown section {quote(name)} (known: {known})")
        if not isinstance(values, dict):
            raise UserError(f"{where}: section '{name}' must be a mapping, got {quote(values)}")
        if name == "model":
            values = _legacy_model_values(values)
        sections[name] = _build_section(SECTIONS[name], values, f"{where}: {name}")
    return with_recorded_choices(ExperimentConfig(**sections))


def with_recorded_choices(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with the choices a run records by name filled in where they are None: the input
    normalisation of its weights and the name of its test protocol. A config read from YAML
    always has them; one built in Python gets them here before it is compared with a saved one.
    """
    if cfg.model.input_norm is None and cfg.model.backbone in PRETRAINED_SOURCES:
        # recorded in the run's config.yaml, so that eval and resume normalise as training did
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, input_norm=input_norm(cfg.model))
        )
    if cfg.eval.protocol is None:  # recorded by name in the run's config.yaml
        cfg = dataclasses.replace(
            cfg, eval=dataclasses.replace(cfg.eval, protocol=protocol_name(cfg.eval))
        )
    return cfg


def validate_config(
    cfg: ExperimentConfig, where: str = "config", pairs: bool = True
) -> ExperimentConfig:
    """Check every value against its rule in :mod:`ohemcli.config_rules`; return ``cfg``.

    The first value out of range is a one-line error naming ``where``, the key and what is allowed.
    With ``pairs``, also the values that must fit each other (model.pretrained and model.backbone).
    """
    for section in SECTIONS:
        values = getattr(cfg, section)
        for f in dataclasses.fields(values):
            key = f"{section}.{f.name}"
            value = getattr(values, f.name)
            allowed = check_value(key, value)
            if allowed is not None:
                raise UserError(
                    f"{where}: {key} = {quote(value)} is not allowed; expected {allowed}"
                )
    if pairs:
        _check_pairs(cfg, where)
    return cfg


def _check_pairs(cfg: ExperimentConfig, where: str) -> None:
    """Values that must fit each other: the weights and the backbone, a protocol and its limits."""
    sources = PRETRAINED_SOURCES[cfg.model.backbone]
    if cfg.model.pretrained not in sources:
        raise UserError(
            f"{where}: model.pretrained = {quote(cfg.model.pretrained)} does not fit "
            f"model.backbone {cfg.model.backbone}; expected one of {', '.join(sources)}"
        )
    _check_detector(cfg, where)
    e = cfg.eval
    limits = TEST_PROTOCOLS.get(e.protocol or "")
    if limits is not None and (e.max_dets, e.score_thresh) != limits:
        raise UserError(
            f"{where}: eval.protocol {e.protocol} means max_dets {limits[0]} and score_thresh "
            f"{limits[1]:g}, not {e.max_dets} and {e.score_thresh:g} (protocol custom takes any)"
        )


def _check_detector(cfg: ExperimentConfig, where: str) -> None:
    """faster-rcnn's settings that must fit each other: no selective-search statistics to
    normalise box targets by, and RPN counts that narrow as they go."""
    m = cfg.model
    if m.detector != "faster-rcnn":
        return
    if m.box_norm == "data":
        raise UserError(
            f"{where}: model.box_norm = data needs fixed proposals to measure; under "
            "model.detector faster-rcnn the proposals change as the RPN learns, so use fixed "
            "(py-faster-rcnn's end-to-end training uses fixed stds too)"
        )
    if m.rpn_bg_iou > m.rpn_fg_iou:
        raise UserError(
            f"{where}: model.rpn_bg_iou {m.rpn_bg_iou:g} is above model.rpn_fg_iou "
            f"{m.rpn_fg_iou:g}; an anchor cannot be both"
        )
    for phase in ("train", "test"):
        pre, post = getattr(m, f"rpn_pre_nms_{phase}"), getattr(m, f"rpn_post_nms_{phase}")
        if post > pre:
            raise UserError(
                f"{where}: model.rpn_post_nms_{phase} {post} is above model.rpn_pre_nms_{phase} "
                f"{pre}; NMS keeps at most what goes in"
            )


def _raw_sections(text: str, where: str) -> dict[str, Any]:
    """The YAML text as a mapping of sections (each a fresh dict, so overrides can go in)."""
    raw = load_yaml(text, where)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of sections, got a {type(raw).__name__}")
    return {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}


def merge_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (sections of plain dicts) with each dotted key of ``overrides`` set; a None value
    is left out (not given) and :data:`NULL` sets null."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        if not isinstance(merged.setdefault(section, {}), dict):
            continue  # config_from_dict names the scalar section
        merged[section][key] = None if value is NULL else value
    return merged


def parse_config(
    text: str,
    where: str,
    overrides: Mapping[str, Any] | None = None,
    pairs: bool = True,
    spelled: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """A config from YAML text with ``overrides`` and what they imply laid over it, validated.

    Errors name ``where`` (and ``spelled[key]``, how the user gave a key, where an implied
    setting conflicts). ``pairs=False`` leaves out the checks of values that must fit each other
    (for one option tried alone: its partner may come from another option)."""
    raw = _raw_sections(text, where)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        given = implied(config_from_dict(raw, where), given, spelled)
    return validate_config(config_from_dict(merge_overrides(raw, given), where), where, pairs)


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Load a YAML config (or the defaults) and apply ``overrides`` such as ``{"train.iters": 10}``.

    Overrides whose value is None are ignored (``NULL`` sets a key to null), so options left unset
    keep the YAML's value. The settings an override implies come with it, as at the command line:
    another ``model.backbone`` brings its own weights and frozen layers, a named
    ``eval.protocol`` its limits (:func:`ohemcli.config.derived.implied`).
    """
    if path is None:
        return parse_config("", "defaults", overrides)
    return parse_config(read_text(path, "config file"), str(path), overrides)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Nested plain dicts (tuples as lists), ready for YAML or JSON."""

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {
        name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, name)).items()}
        for name in SECTIONS
    }


def config_to_yaml(cfg: ExperimentConfig) -> str:
    """The config as YAML text, sections in a fixed order."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def resolve(
    cfg: ExperimentConfig, overrides: Mapping[str, Any] | None = None, where: str = "overrides"
) -> ExperimentConfig:
    """``cfg`` with ``overrides`` and the settings they imply laid over it, checked.

    The Python twin of the command line's ``--set``: ``resolve(cfg, {"model.backbone": "vgg16"})``
    also takes vgg16's weights and frozen layers, as ``ohem train --set model.backbone=vgg16``
    does. A normalisation that ``cfg`` only recorded from its weights follows new weights.
    """
    given = dict(overrides or {})
    if "model.input_norm" not in given and cfg.model.input_norm == input_norm(
        dataclasses.replace(cfg.model, input_norm=None)
    ):
        given["model.input_norm"] = NULL  # derived, not chosen: the new weights' own
        if not given.keys() - {"model.input_norm"}:
            return validate_config(cfg, where)
    return parse_config(config_to_yaml(cfg), where, given)


def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Data root, .mat proposals, images and weights as absolute paths, so that a run folder works
    from anywhere (the command line and :mod:`ohemcli.api` save configs so)."""

    def absolute(p: str) -> str:
        return os.path.abspath(os.path.expanduser(p))

    d, m = cfg.data, cfg.model
    # COCO json files come as "a.json,b.json": each one made absolute
    root = d.root if d.root == "synth" else ",".join(absolute(p) for p in d.root.split(","))
    named = ("selective_search", "release")  # sources, not paths
    proposals = d.proposals if d.proposals in named else absolute(d.proposals)
    weights = None if m.weights is None else absolute(m.weights)
    images = None if d.images is None else absolute(d.images)
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(d, root=root, proposals=proposals, images=images),
        model=dataclasses.replace(m, weights=weights),
    )
