"""Options shared by ``ohem train`` and ``ohem compare``, and their mapping onto config keys."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ohemcli.config import ExperimentConfig, load_config
from ohemcli.errors import UserError

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"


class Backbone(str, Enum):
    vgg16 = "vgg16"
    tiny = "tiny"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class RoIOp(str, Enum):
    pool = "pool"
    align = "align"


class RankingLoss(str, Enum):
    cls_box = "cls+box"
    cls = "cls"


class NmsScope(str, Enum):
    label = "label"
    image = "image"


class PoolRule(str, Enum):
    accumulate = "accumulate"
    replace = "replace"


DataOpt = Annotated[
    str | None, typer.Option("--data", help="'synth' (built-in, no download) or a VOC root folder.")
]
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="YAML file, or a preset name from experiments/ (synth_tiny, bccd_tiny, voc07_vgg16). "
        "Default: synth_tiny for --data synth, else voc07_vgg16 (the paper's setting).",
    ),
]
IterOpt = Annotated[
    int | None, typer.Option("--iters", min=1, help="SGD iterations (overrides the config).")
]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Seed of weights, image order, flips and sampling.")
]
DeviceOpt = Annotated[Device | None, typer.Option("--device", help="auto picks CUDA when present.")]
AmpOpt = Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision (CUDA only).")]
BackboneOpt = Annotated[
    Backbone | None, typer.Option("--backbone", help="vgg16 (the paper) or tiny (CPU).")
]
PretrainedOpt = Annotated[
    bool | None,
    typer.Option(
        "--pretrained/--no-pretrained", help="ImageNet weights for vgg16 (default on for vgg16)."
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="Local backbone state dict (offline ImageNet weights)."),
]
RoIOpOpt = Annotated[
    RoIOp | None, typer.Option("--roi-op", help="RoI max pooling (paper) or RoIAlign.")
]
LrOpt = Annotated[float | None, typer.Option("--lr", min=0.0, help="Base learning rate.")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=0, help="DataLoader worker processes.")
]
EvalPointsOpt = Annotated[
    int | None, typer.Option("--eval-points", min=0, help="Evaluations during training.")
]
DifficultOpt = Annotated[
    bool | None,
    typer.Option("--use-difficult/--no-use-difficult", help="Train on difficult objects."),
]
OhemNmsOpt = Annotated[
    bool | None, typer.Option("--ohem-nms/--no-ohem-nms", help="ohem: NMS over loss-scored RoIs.")
]
OhemNmsIouOpt = Annotated[
    float | None, typer.Option("--ohem-nms-iou", min=0.0, max=1.0, help="ohem: NMS IoU (0.7).")
]
OhemNmsScopeOpt = Annotated[
    NmsScope | None,
    typer.Option(
        "--ohem-nms-scope", help="ohem: NMS per (image, label) as the release, or per image."
    ),
]
OhemLossOpt = Annotated[
    RankingLoss | None, typer.Option("--ohem-loss", help="ohem: rank by cls+box (paper) or cls.")
]
MineEveryOpt = Annotated[
    int | None,
    typer.Option(
        "--mine-every", min=0, help="hnm: iterations between mining passes (0: each epoch)."
    ),
]
FpThreshOpt = Annotated[
    float | None,
    typer.Option(
        "--hnm-fp-thresh", min=0.0, max=1.0, help="hnm: object score of a false positive."
    ),
]
PoolOpt = Annotated[
    int | None,
    typer.Option("--hnm-pool-per-image", min=1, help="hnm: most false positives kept per image."),
]
HnmPoolOpt = Annotated[
    PoolRule | None,
    typer.Option(
        "--hnm-pool", help="hnm: add each pass's false positives to the pool, or replace it."
    ),
]

# CLI option name -> config key
OPTION_KEYS = {
    "data": "data.data",
    "workers": "data.workers",
    "use_difficult": "data.use_difficult",
    "backbone": "model.backbone",
    "pretrained": "model.pretrained",
    "weights": "model.weights",
    "roi_op": "model.roi_op",
    "sampler": "sampler.name",
    "ohem_nms": "sampler.ohem_nms",
    "ohem_nms_iou": "sampler.ohem_nms_iou",
    "ohem_nms_scope": "sampler.ohem_nms_scope",
    "ohem_loss": "sampler.ohem_loss",
    "mine_every": "sampler.mine_every",
    "hnm_fp_thresh": "sampler.hnm_fp_thresh",
    "hnm_pool_per_image": "sampler.hnm_pool_per_image",
    "hnm_pool": "sampler.hnm_pool",
    "iters": "train.iters",
    "seed": "train.seed",
    "device": "train.device",
    "amp": "train.amp",
    "lr": "train.lr",
    "eval_points": "train.eval_points",
    "checkpoint_every": "train.checkpoint_every",
}


def resolve_config_path(config: str | None, data: str | None) -> Path | None:
    """A YAML path or a preset of experiments/ (default: synth_tiny for synth, else voc07_vgg16)."""
    if config is None:  # the CPU preset for synth, the paper's setting for real data
        name = "synth_tiny" if data in (None, "synth") else "voc07_vgg16"
        return EXPERIMENTS_DIR / f"{name}.yaml"
    path = Path(config)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = EXPERIMENTS_DIR / f"{config}.yaml"
    if not preset.is_file():
        raise UserError(f"--config: '{config}' is neither a file nor a preset in {EXPERIMENTS_DIR}")
    return preset


def build_config(config: str | None, options: dict[str, Any]) -> ExperimentConfig:
    """The YAML (or preset) with every option that was given laid over it."""
    overrides = {}
    for name, value in options.items():
        if value is None:
            continue
        overrides[OPTION_KEYS[name]] = (
            value.value
            if isinstance(value, Enum)
            else (str(value) if isinstance(value, Path) else value)
        )
    cfg = load_config(resolve_config_path(config, options.get("data")), overrides)
    chose_vgg16 = options.get("backbone") in (Backbone.vgg16, "vgg16")
    if chose_vgg16 and options.get("pretrained") is None and not cfg.model.weights:
        # --backbone vgg16 means ImageNet weights unless --no-pretrained or --weights says otherwise
        cfg = replace(cfg, model=replace(cfg.model, pretrained=True))
    return cfg


def parse_classes(classes: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list of distinct names (None when not given)."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--classes: expected distinct comma-separated names, got {classes!r}")
    return names
