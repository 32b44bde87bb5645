"""The options of ``ohem train``, ``compare`` and ``bench``, each declared once with its help panel.

Each ``...Opt`` is an ``Annotated`` type that a command takes as a parameter; the parameter's name
is its key in :data:`ohemcli.cli.overrides.OPTION_KEYS`, which names the config key it sets. An
option left out is None and keeps the YAML's value. The choices of an option are the allowed
values of its key's rule in :mod:`ohemcli.config_rules`, so a new value there shows up here.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ohemcli.config_rules import RULES, Choice, OrNone

# Help panels: related options are shown together in --help.
DATA = "Data"
MODEL = "Model"
SAMPLER = "Sampler"
TRAINING = "Training"
OUTPUT = "Output"
REPORT = "Report"


def choice_enum(name: str, key: str) -> type[Enum]:
    """A ``str`` Enum of the values that the rule of config key ``key`` allows, in its order."""
    rule = RULES[key]
    if isinstance(rule, OrNone):  # null stays the YAML's business, not an option's
        rule = rule.inner
    if not isinstance(rule, Choice):
        raise TypeError(f"{key}: its rule is {type(rule).__name__}, not a Choice")
    choice = Enum(name, {value: value for value in rule.values}, type=str)  # type: ignore[misc]
    choice.__doc__ = f"The values of ``{key}`` (its rule in config_rules)."
    return choice


Backbone = choice_enum("Backbone", "model.backbone")
Pretrained = choice_enum("Pretrained", "model.pretrained")
RoIOp = choice_enum("RoIOp", "model.roi_op")
NmsScope = choice_enum("NmsScope", "sampler.ohem_nms_scope")
RegimeMode = choice_enum("RegimeMode", "sampler.regime")
RankingLoss = choice_enum("RankingLoss", "sampler.ohem_loss")
RankDtype = choice_enum("RankDtype", "sampler.rank_dtype")
PoolRule = choice_enum("PoolRule", "sampler.hnm_pool")
Device = choice_enum("Device", "train.device")
LibraBins = choice_enum("LibraBins", "sampler.libra_bins")
PairMode = Enum("PairMode", {"baseline": "baseline", "all": "all"}, type=str)  # type: ignore[misc]
PairMode.__doc__ = "Which pairs the report shows (``report.pairs.sampler_pairs``)."
ProtocolName = choice_enum("ProtocolName", "eval.protocol")


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
ImagesOpt = Annotated[
    str | None, _opt("--images", panel=DATA, help="Image folder of COCO json files (--data).")
]
KeepEmptyOpt = Annotated[
    bool | None,
    _opt(
        "--keep-empty/--no-keep-empty",
        panel=DATA,
        help="COCO: train on images with no usable box too (default: skipped).",
    ),
]
ConfigOpt = Annotated[
    str | None,
    _opt(
        "--config",
        panel=DATA,
        help="A YAML file or a preset name (see above).",
    ),
]
WorkersOpt = Annotated[
    int | None, _opt("--workers", panel=DATA, help="Loader processes (evaluation: threads).")
]
TrainImagesOpt = Annotated[
    int | None, _opt("--train-images", panel=DATA, help="Train on the first K images (0: all).")
]
DifficultOpt = Annotated[
    bool | None,
    _opt("--use-difficult/--no-use-difficult", panel=DATA, help="Train on difficult objects."),
]
BackboneOpt = Annotated[
    Backbone | None,
    _opt("--backbone", panel=MODEL, metavar="<name>", help=_backbone_help()),
]
PretrainedOpt = Annotated[
    Pretrained | None,
    _opt(
        "--pretrained",
        panel=MODEL,
        metavar="<source>",
        help="Weights: caffe, torchvision (ImageNet), shipped (tiny), none.",
    ),
]
WeightsOpt = Annotated[
    Path | None, _opt("--weights", panel=MODEL, help="Local backbone state dict (offline).")
]
FrozenConvsOpt = Annotated[
    int | None, _opt("--frozen-convs", panel=MODEL, help="Leading conv layers kept frozen.")
]
RoIOpOpt = Annotated[
    RoIOp | None,
    _opt("--roi-op", panel=MODEL, help="RoI max pooling (paper) or RoIAlign."),
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
OhemNmsOpt = Annotated[
    bool | None, _opt("--ohem-nms/--no-ohem-nms", panel=SAMPLER, help="ohem: NMS by loss.")
]
OhemNmsIouOpt = Annotated[
    float | None, _opt("--ohem-nms-iou", panel=SAMPLER, help="ohem: IoU of that NMS (0.7).")
]
RegimeOpt = Annotated[
    RegimeMode | None,
    _opt(
        "--regime",
        panel=SAMPLER,
        metavar="<mode>",
        help="Sampler budgets: each its own (reference) or the config's.",
    ),
]
OhemNmsScopeOpt = Annotated[
    NmsScope | None,
    _opt(
        "--ohem-nms-scope",
        panel=SAMPLER,
        metavar="<scope>",
        help="ohem: NMS per label (release) or image.",
    ),
]
OhemLossOpt = Annotated[
    RankingLoss | None,
    _opt("--ohem-loss", panel=SAMPLER, metavar="<rule>", help="ohem: rank by cls+box or cls."),
]
RankDtypeOpt = Annotated[
    RankDtype | None,
    _opt(
        "--rank-dtype",
        panel=SAMPLER,
        metavar="<dtype>",
        help="Ranking passes: float32 or bfloat16.",
    ),
]
MineEveryOpt = Annotated[
    int | None,
    _opt("--mine-every", panel=SAMPLER, help="hnm: mining period (0: each epoch)."),
]
FpThreshOpt = Annotated[
    float | None, _opt("--hnm-fp-thresh", panel=SAMPLER, help="hnm: false-positive score.")
]
PoolOpt = Annotated[
    int | None, _opt("--hnm-pool-per-image", panel=SAMPLER, help="hnm: most kept per image.")
]
HnmPoolOpt = Annotated[
    PoolRule | None,
    _opt(
        "--hnm-pool", panel=SAMPLER, metavar="<rule>", help="hnm: accumulate or replace the pool."
    ),
]
LibraBinsOpt = Annotated[
    LibraBins | None,
    _opt(
        "--libra-bins",
        panel=SAMPLER,
        metavar="<rule>",
        help="libra: bins up to the max IoU of any RoI (reference) or of [0, 0.5) (paper).",
    ),
]
BgLoOpt = Annotated[
    float | None,
    _opt("--bg-lo", panel=SAMPLER, help="fixed, hnm: background IoU floor (ablation: 0)."),
]
IterOpt = Annotated[int | None, _opt("--iters", panel=TRAINING, help="SGD iterations.")]
SeedOpt = Annotated[int | None, _opt("--seed", panel=TRAINING, help="Seed of weights and order.")]
DeviceOpt = Annotated[
    Device | None,
    _opt("--device", panel=TRAINING, help="auto picks CUDA when present."),
]
AmpOpt = Annotated[
    bool | None, _opt("--amp/--no-amp", panel=TRAINING, help="Mixed precision (CUDA).")
]
TensorboardOpt = Annotated[
    bool | None,
    _opt(
        "--tensorboard/--no-tensorboard",
        panel=OUTPUT,
        help="TensorBoard event files in RUN/tb/ (on when tensorboard is installed).",
    ),
]
LrOpt = Annotated[float | None, _opt("--lr", panel=TRAINING, help="Base learning rate.")]
EvalPointsOpt = Annotated[
    int | None, _opt("--eval-points", panel=TRAINING, help="Evaluations during training.")
]
CheckpointEveryOpt = Annotated[
    int | None, _opt("--checkpoint-every", panel=TRAINING, help="Iterations per checkpoint.")
]
ImagesPerBatchOpt = Annotated[
    int | None,
    _opt("--images-per-batch", panel=TRAINING, help="N, images per batch (ablation: 1)."),
]
MaxDetsOpt = Annotated[
    int | None,
    _opt("--max-dets", panel=OUTPUT, help="Test: detections per image (release: 2000)."),
]
ScoreThreshOpt = Annotated[
    float | None,
    _opt("--score-thresh", panel=OUTPUT, help="Test: score floor (release: 0.00001)."),
]
TestProtocolOpt = Annotated[
    ProtocolName | None,
    _opt(
        "--test-protocol",
        panel=OUTPUT,
        metavar="<name>",
        help="Test: default, ohem-release or fast-rcnn (README).",
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
