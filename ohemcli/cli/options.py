"""The options shared by ``ohem train``, ``compare`` and ``bench``, and their map onto config keys.

Each option is declared once here as an ``Annotated`` type with its help panel. Its value travels
in :class:`ConfigFlags`, whose :meth:`ConfigFlags.apply` writes it over one config key by name:
``--ohem-nms`` -> ``ConfigFlags.ohem_nms`` -> ``SamplerConfig.ohem_nms``. An option left out is
None and keeps the YAML's value. To add an option: an ``...Opt`` type here, a field of
ConfigFlags, one keyword in ``apply``, and the parameter in each command that offers it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ohemcli.config import ExperimentConfig, load_config, parse_config, validate_config
from ohemcli.errors import UserError, quote
from ohemcli.presets import CPU_PRESET, GPU_PRESET, SYNTH_PRESET, preset_text
from ohemcli.samplers import SAMPLERS, SamplerName

# Help panels: related options are shown together in --help.
DATA = "Data"
MODEL = "Model"
SAMPLER = "Sampler"
TRAINING = "Training"
OUTPUT = "Output"
LAUNCHER = "Launcher"  # ohem compare: where and how many runs at once (launch.submit)


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


def _opt(*decls: str, panel: str, help: str, **kw: Any) -> Any:  # noqa: A002 - typer's name
    if "/" in decls[0]:
        kw.setdefault("metavar", "")  # an on/off pair needs no type column (narrow help)
    return typer.Option(*decls, help=help, rich_help_panel=panel, show_default=False, **kw)


DataOpt = Annotated[
    str | None, _opt("--data", panel=DATA, help="'synth' (built-in) or a VOC root folder.")
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
    int | None, _opt("--workers", panel=DATA, help="DataLoader worker processes.")
]
DifficultOpt = Annotated[
    bool | None,
    _opt("--use-difficult/--no-use-difficult", panel=DATA, help="Train on difficult objects."),
]
BackboneOpt = Annotated[
    Backbone | None, _opt("--backbone", panel=MODEL, help="vgg16 (the paper) or tiny (CPU).")
]
PretrainedOpt = Annotated[
    bool | None,
    _opt(
        "--pretrained/--no-pretrained",
        panel=MODEL,
        help="vgg16: ImageNet weights; tiny: the shipped weights pretrained on synthetic-shape "
        "crops (on in synth_tiny).",
    ),
]
WeightsOpt = Annotated[
    Path | None, _opt("--weights", panel=MODEL, help="Local backbone state dict (offline).")
]
RoIOpOpt = Annotated[
    RoIOp | None, _opt("--roi-op", panel=MODEL, help="RoI max pooling (paper) or RoIAlign.")
]
SamplerOpt = Annotated[
    SamplerName | None,
    _opt(
        "--sampler",
        panel=SAMPLER,
        metavar="<name>",
        help=f"{', '.join(SAMPLERS)} (default: the YAML's).",
    ),
]
OhemNmsOpt = Annotated[
    bool | None, _opt("--ohem-nms/--no-ohem-nms", panel=SAMPLER, help="ohem: NMS by loss.")
]
OhemNmsIouOpt = Annotated[
    float | None, _opt("--ohem-nms-iou", panel=SAMPLER, help="ohem: IoU of that NMS (0.7).")
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
IterOpt = Annotated[int | None, _opt("--iters", panel=TRAINING, help="SGD iterations.")]
SeedOpt = Annotated[int | None, _opt("--seed", panel=TRAINING, help="Seed of weights and order.")]
DeviceOpt = Annotated[
    Device | None, _opt("--device", panel=TRAINING, help="auto picks CUDA when present.")
]
AmpOpt = Annotated[
    bool | None, _opt("--amp/--no-amp", panel=TRAINING, help="Mixed precision (CUDA).")
]
LrOpt = Annotated[float | None, _opt("--lr", panel=TRAINING, help="Base learning rate.")]
EvalPointsOpt = Annotated[
    int | None, _opt("--eval-points", panel=TRAINING, help="Evaluations during training.")
]
CheckpointEveryOpt = Annotated[
    int | None, _opt("--checkpoint-every", panel=TRAINING, help="Iterations per checkpoint.")
]
BgLoOpt = Annotated[
    float | None,
    _opt("--bg-lo", panel=SAMPLER, help="fixed, hnm: background IoU floor (ablation: 0)."),
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


def _given(section: Any, **values: Any) -> Any:
    """``section`` with the values that are not None written over it."""
    given = {k: v.value if isinstance(v, Enum) else v for k, v in values.items() if v is not None}
    return replace(section, **given) if given else section


@dataclass(frozen=True)
class ConfigFlags:
    """The shared options as the user gave them; None means "not given: keep the YAML's value"."""

    data: str | None = None
    workers: int | None = None
    use_difficult: bool | None = None
    backbone: Backbone | None = None
    pretrained: bool | None = None
    weights: Path | None = None
    roi_op: RoIOp | None = None
    sampler: SamplerName | None = None
    ohem_nms: bool | None = None
    ohem_nms_iou: float | None = None
    ohem_nms_scope: NmsScope | None = None
    ohem_loss: RankingLoss | None = None
    mine_every: int | None = None
    hnm_fp_thresh: float | None = None
    hnm_pool_per_image: int | None = None
    hnm_pool: PoolRule | None = None
    iters: int | None = None
    seed: int | None = None
    device: Device | None = None
    amp: bool | None = None
    lr: float | None = None
    eval_points: int | None = None
    checkpoint_every: int | None = None
    bg_lo: float | None = None
    images_per_batch: int | None = None
    max_dets: int | None = None
    score_thresh: float | None = None

    def apply(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """``cfg`` with every given option written over its config key."""
        weights = None if self.weights is None else str(self.weights)
        cfg = replace(
            cfg,
            data=_given(
                cfg.data, root=self.data, workers=self.workers, use_difficult=self.use_difficult
            ),
            model=_given(
                cfg.model,
                backbone=self.backbone,
                pretrained=self.pretrained,
                weights=weights,
                roi_op=self.roi_op,
            ),
            sampler=_given(
                cfg.sampler,
                name=self.sampler,
                ohem_nms=self.ohem_nms,
                ohem_nms_iou=self.ohem_nms_iou,
                ohem_nms_scope=self.ohem_nms_scope,
                ohem_loss=self.ohem_loss,
                mine_every=self.mine_every,
                hnm_fp_thresh=self.hnm_fp_thresh,
                hnm_pool_per_image=self.hnm_pool_per_image,
                hnm_pool=self.hnm_pool,
                bg_lo=self.bg_lo,
            ),
            train=_given(
                cfg.train,
                iters=self.iters,
                seed=self.seed,
                device=self.device,
                amp=self.amp,
                lr=self.lr,
                eval_points=self.eval_points,
                checkpoint_every=self.checkpoint_every,
                images_per_batch=self.images_per_batch,
            ),
            eval=_given(cfg.eval, max_dets=self.max_dets, score_thresh=self.score_thresh),
        )
        if self.backbone == Backbone.vgg16 and self.pretrained is None and not cfg.model.weights:
            # --backbone vgg16 means ImageNet weights unless --no-pretrained or --weights says so
            cfg = replace(cfg, model=replace(cfg.model, pretrained=True))
        return cfg


def cuda_available() -> bool:
    """Whether this machine has CUDA (a function so that tests can choose)."""
    import torch

    return torch.cuda.is_available()


def default_preset(data: str | None, device: Device | None) -> str:
    """The preset for a command line without --config, by data set and device.

    The synthetic set has its own CPU preset. Other data gets the paper's preset when it will run
    on CUDA and the CPU preset otherwise; one line on stderr says which and how to pick the other.
    """
    if data in (None, "synth"):
        return SYNTH_PRESET
    on_cuda = device == Device.cuda or (device in (None, Device.auto) and cuda_available())
    chosen, other = (GPU_PRESET, CPU_PRESET) if on_cuda else (CPU_PRESET, GPU_PRESET)
    from ohemcli.progress import err_console

    where = "CUDA" if on_cuda else "no CUDA"
    err_console.print(
        f"{where}: using preset {chosen}; pass --config {other} for the "
        f"{'CPU' if on_cuda else 'paper GPU'} setting",
        highlight=False,
        soft_wrap=True,
    )
    return chosen


def read_config(config: str | None, flags: ConfigFlags) -> ExperimentConfig:
    """The YAML file or preset named by ``--config`` (or the default preset), validated."""
    if config is None:
        config = default_preset(flags.data, flags.device)
    elif Path(config).suffix in (".yaml", ".yml") or Path(config).exists():
        return load_config(config)
    return parse_config(preset_text(config), f"preset {config}")


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Data root, .mat proposals and weights as absolute paths, so a run folder works anywhere."""

    def absolute(p: str) -> str:
        return os.path.abspath(os.path.expanduser(p))

    d, m = cfg.data, cfg.model
    root = d.root if d.root == "synth" else absolute(d.root)
    named = ("selective_search", "release")  # sources, not paths
    proposals = d.proposals if d.proposals in named else absolute(d.proposals)
    weights = None if m.weights is None else absolute(m.weights)
    return replace(
        cfg,
        data=replace(d, root=root, proposals=proposals),
        model=replace(m, weights=weights),
    )


def build_config(config: str | None, flags: ConfigFlags) -> ExperimentConfig:
    """The YAML (or preset) with every given option laid over it, checked and with absolute paths.

    A value out of range is one line naming the YAML file and key, or the option that set it.
    """
    base = read_config(config, flags)
    if base.sampler.name not in SAMPLERS:
        raise UserError(
            f"{config or 'preset'}: sampler.name = {quote(base.sampler.name)} is not allowed; "
            f"expected one of {', '.join(SAMPLERS)}"
        )
    for f in fields(flags):  # each option alone, so that an error names it
        value = getattr(flags, f.name)
        if value is not None:
            option = "--" + f.name.replace("_", "-")
            validate_config(ConfigFlags(**{f.name: value}).apply(base), option)
    return absolute_paths(validate_config(flags.apply(base), "command line"))


def parse_samplers(text: str) -> list[str]:
    """``"fixed,hnm,ohem"`` -> ``["fixed", "hnm", "ohem"]`` (names are checked by the caller)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_classes(classes: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list of distinct names (None when not given)."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--classes: expected distinct comma-separated names, got {quote(classes)}")
    return names


# ohem compare's launcher options: not config keys; they build an launch.submit.Launch.
class Launcher(str, Enum):
    local = "local"
    slurm = "slurm"


LauncherOpt = Annotated[
    Launcher,
    typer.Option(
        "--launcher",
        show_default=False,
        help="local (default) or slurm, via submitit.",
        rich_help_panel=LAUNCHER,
    ),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Runs at once (CPU: 1; CUDA: GPUs / G).",
        rich_help_panel=LAUNCHER,
    ),
]
GpusPerRunOpt = Annotated[
    int,
    typer.Option(
        "--gpus-per-run",
        min=1,
        help="GPUs per run (DDP).",
        rich_help_panel=LAUNCHER,
    ),
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="No: submit, return.",
        rich_help_panel=LAUNCHER,
    ),
]
SlurmPartitionOpt = Annotated[
    str | None,
    typer.Option("--slurm-partition", help="Slurm partition.", rich_help_panel=LAUNCHER),
]
SlurmTimeOpt = Annotated[
    int,
    typer.Option(
        "--slurm-time",
        min=1,
        metavar="MIN",
        show_default=False,
        help="Minutes per Slurm job (default 1440).",
        rich_help_panel=LAUNCHER,
    ),
]
SlurmAccountOpt = Annotated[
    str | None,
    typer.Option("--slurm-account", help="Slurm account.", rich_help_panel=LAUNCHER),
]
SlurmConstraintOpt = Annotated[
    str | None,
    typer.Option(
        "--slurm-constraint",
        help="Slurm node feature, e.g. a100.",
        rich_help_panel=LAUNCHER,
    ),
]
SlurmMemOpt = Annotated[
    str | None,
    typer.Option("--slurm-mem", help="Slurm memory per node, e.g. 64G.", rich_help_panel=LAUNCHER),
]
