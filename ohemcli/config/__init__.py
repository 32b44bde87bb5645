"""Experiment configuration: the schema, loading YAML with overrides, and derived settings.

- :mod:`ohemcli.config.schema`: the frozen dataclasses and the tables their values refer to;
- :mod:`ohemcli.config.loading`: YAML, coercion, dotted-key overrides, checks, :func:`resolve`;
- :mod:`ohemcli.config.derived`: the settings an override implies;
- :mod:`ohemcli.config.keys`: every dotted key with its type, range and default.

The names below are the ones other modules import; ``from ohemcli.config import X`` keeps working.
"""

from __future__ import annotations

from ohemcli.config.derived import NULL, implied
from ohemcli.config.loading import (
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
    merge_overrides,
    parse_config,
    resolve,
    validate_config,
    with_absolute_paths,
    with_recorded_choices,
)
from ohemcli.config.schema import (
    BACKBONE_WEIGHTS,
    BUDGET_KEYS,
    DEFAULT_FROZEN_CONVS,
    FAST_RCNN_MAX_PER_IMAGE,
    FAST_RCNN_PER_CLASS,
    METHOD_KEYS,
    PRETRAINED_SOURCES,
    SECTIONS,
    SOURCE_INPUT_NORM,
    TEST_PROTOCOLS,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    SamplerConfig,
    TrainConfig,
    anchor_sizes,
    input_norm,
    pretrained_source,
    protocol_name,
)

__all__ = [
    "BACKBONE_WEIGHTS",
    "BUDGET_KEYS",
    "DEFAULT_FROZEN_CONVS",
    "FAST_RCNN_MAX_PER_IMAGE",
    "FAST_RCNN_PER_CLASS",
    "METHOD_KEYS",
    "NULL",
    "PRETRAINED_SOURCES",
    "SECTIONS",
    "SOURCE_INPUT_NORM",
    "TEST_PROTOCOLS",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "SamplerConfig",
    "TrainConfig",
    "anchor_sizes",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "implied",
    "input_norm",
    "load_config",
    "merge_overrides",
    "parse_config",
    "pretrained_source",
    "protocol_name",
    "resolve",
    "validate_config",
    "with_absolute_paths",
    "with_recorded_choices",
]
