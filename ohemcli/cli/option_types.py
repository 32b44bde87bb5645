"""The first-class options of ``ohem train``, ``compare`` and ``bench``, each declared once.

Each ``...Opt`` is an ``Annotated`` type that a command takes as a parameter; a parameter named
in :data:`ohemcli.cli.aliases.OPTION_KEYS` sets that config key (an option left out is None and
keeps the YAML's value). Only what people type daily is here; every other key is ``--set KEY=VALUE``
or its hidden alias (:mod:`ohemcli.cli.aliases`). Choices come from the keys' rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Annotated, Any

import typer

from ohemcli.cli.aliases import choice_enum

# Help panels: related options are shown together in --help.
DATA = "Data"
CONFIG = "Config"
MODEL = "Model"
SAMPLER = "Sampler"
TRAINING = "Training"
OUTPUT = "Output"
REPORT = "Report"


Backbone = choice_enum("Backbone", "model.backbone")
Detector = choice_enum("Detector", "model.detector")
RegimeMode = choice_enum("RegimeMode", "sampler.regime")
Device = choice_enum("Device", "train.device")
ProtocolName = choice_enum("ProtocolName", "eval.protocol")
PairMode = Enum("PairMode", {"baseline": "baseline", "all": "all"}, type=str)
PairMode.__doc__ = "Which pairs the report shows (``report.pairs.sampler_pairs``)."


def one_of(values: Iterable[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b or c"``."""
    *first, last = values
    return f"{', '.join(first)} or {last}" if first else last


# What a backbone is for, in --help; a backbone that its rule allows and this omits is listed bare.
BACKBONE_NOTES = {"vgg16": "vgg16 (the paper)", "tiny": "tiny (CPU)"}


def _backbone_help() -> str:
    return one_of(BACKBONE_NOTES.get(b.value, b.value) for b in Backbone) + "."


def _opt(*decls: str, panel: str, help: str, **kw: Any) -> Any:  # noqa: A002 - typer's name
    if "/" in decls[0]:
        kw.setdefault("metavar", "")  # an on/off pair needs no type column (narrow help)
    return typer.Option(*decls, help=help, rich_help_panel=panel, show_default=False, **kw)


DataOpt = Annotated[
    str | None,
    _opt(
        "--data",
        panel=DATA,
        help="'synth' (built-in), a VOC root, a COCO set's folder, or json files a.json,b.json.",
    ),
]
ConfigOpt = Annotated[
    str | None,
    _opt(
        "--config",
        panel=CONFIG,
        help="A YAML file or a preset name (see above).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    _opt(
        "--set",
        panel=CONFIG,
        metavar="KEY=VALUE",
        help="Any config key, repeatable (ohem config keys lists them).",
    ),
]
BackboneOpt = Annotated[
    Backbone | None,  # type: ignore[valid-type]  # a functional Enum (choice_enum), read by typer
    _opt("--backbone", panel=MODEL, metavar="<name>", help=_backbone_help()),
]
DetectorOpt = Annotated[
    Detector | None,  # type: ignore[valid-type]  # a functional Enum (choice_enum), read by typer
    _opt(
        "--detector",
        panel=MODEL,
        metavar="<name>",
        help="fast-rcnn (selective search) or faster-rcnn (an RPN; presets faster_*).",
    ),
]
# A plain string, not the SamplerName choice: a plugin (pkg.module:Class or an entry point) is a
# sampler too, as in the YAML's sampler.name; build_config checks the name.
SamplerOpt = Annotated[
    str | None,
    _opt(
        "--sampler",
        panel=SAMPLER,
        metavar="<name>",
        help="One listed above, or your own as pkg.module:Class (default: the YAML's).",
    ),
]
RegimeOpt = Annotated[
    RegimeMode | None,  # type: ignore[valid-type]  # a functional Enum (choice_enum), read by typer
    _opt(
        "--regime",
        panel=SAMPLER,
        metavar="<mode>",
        help="Sampler budgets: each its own (reference) or the config's.",
    ),
]
IterOpt = Annotated[int | None, _opt("--iters", panel=TRAINING, help="SGD iterations.")]
SeedOpt = Annotated[int | None, _opt("--seed", panel=TRAINING, help="Seed of weights and order.")]
DeviceOpt = Annotated[
    Device | None,  # type: ignore[valid-type]  # a functional Enum (choice_enum), read by typer
    _opt("--device", panel=TRAINING, help="auto picks CUDA when present."),
]
LrOpt = Annotated[float | None, _opt("--lr", panel=TRAINING, help="Base learning rate.")]
MaxDetsOpt = Annotated[
    int | None,
    _opt("--max-dets", panel=OUTPUT, help="Test: detections per image (release: 2000)."),
]
ScoreThreshOpt = Annotated[
    float | None,
    _opt("--score-thresh", panel=OUTPUT, help="Test: score floor (release: 0.00001)."),
]
TestProtocolOpt = Annotated[
    ProtocolName | None,  # type: ignore[valid-type]  # a functional Enum (choice_enum), read by typer
    _opt(
        "--test-protocol",
        panel=OUTPUT,
        metavar="<name>",
        help="Test: default, ohem-release or fast-rcnn (docs).",
    ),
]


# ohem compare and ohem report: how the finished runs are summed up (not config keys).
def _bootstrap(value: int) -> int:
    """Refuse a resample count out of range before any work (one line, exit 2)."""
    from ohemcli.report.pairs import check_bootstrap

    return check_bootstrap(value)


BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap",
        callback=_bootstrap,
        metavar="N",
        show_default=False,
        help="Resamples for the 95% intervals (default 1000; 0: t over seeds).",
        rich_help_panel=REPORT,
    ),
]
TargetMapOpt = Annotated[
    float | None,
    typer.Option(
        "--target-map",
        min=0.0,
        max=1.0,
        metavar="MAP",
        help="mAP for time to accuracy (default: 0.95 x lowest final).",
        rich_help_panel=REPORT,
    ),
]

BaselineOpt = Annotated[
    str,
    _opt(
        "--baseline",
        panel=REPORT,
        help="With more than 3 samplers, each is paired with this one (and ohem − hnm).",
    ),
]
PairsOpt = Annotated[
    PairMode,
    _opt("--pairs", panel=REPORT, help="baseline: each against --baseline; all: every pair."),
]
