"""Experiment configuration: frozen dataclasses, YAML loading and CLI overrides.

A YAML file has one mapping per section (``data``, ``model``, ``sampler``, ``train``, ``eval``).
Unknown keys and values of the wrong type are one-line errors naming the file and key. CLI options
override the YAML; the resolved config is saved in every run folder as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ohemcli.config_rules import check_value
from ohemcli.errors import UserError, quote
from ohemcli.fileio import load_yaml, read_text


@dataclass(frozen=True)
class DataConfig:
    # "synth" (built-in synthetic set), a VOC-format root, a COCO set's folder (COCO's or
    # Roboflow's layout) or COCO json files "train.json,test.json" (see data.coco_layout)
    root: str = "synth"
    images: str | None = None  # image folder of explicit COCO json files (None: each json's)
    train_split: str = "trainval"  # split to train on
    train_images: int = 0  # train on the first K images of train_split only (0 = all of them)
    test_split: str = "test"  # split to evaluate on
    classes: tuple[str, ...] | None = (
        None  # class names; None = infer from the data (VOC names if they fit)
    )
    # "selective_search" (OpenCV), "release" (the Fast R-CNN release's boxes next to a VOC2007
    # root, else selective_search) or .mat files: "dir/voc_2007_{split}.mat"
    proposals: str = "selective_search"
    max_proposals: int = 2000  # proposals kept per image (0 = all of them)
    ss_max_side: int = 0  # selective search on images shrunk to this longer side (0 = full size)
    scale: int = 600  # shorter image side after resizing, in pixels
    max_size: int = 1000  # cap on the longer side after resizing
    flip: bool = True  # random horizontal flip in training
    use_difficult: bool = False  # keep difficult objects as training targets
    keep_empty: bool = False  # COCO: keep training images with no usable box (default: skip)
    workers: int = 2  # DataLoader worker processes; evaluation: loading threads (0: inline)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "tiny"  # "vgg16" (paper), "tiny" (CPU) or "resnet18" (ImageNet, C4 split)
    # Where the backbone's initial weights come from (PRETRAINED_SOURCES): "caffe" (vgg16: Caffe's
    # VGG16.v2.caffemodel as a state dict, `ohem data download vgg16-caffe`), "torchvision"
    # (vgg16, resnet18: torchvision's ImageNet weights), "shipped" (tiny: the package's synth
    # weights) or "none" (random). The old booleans still load: see LEGACY_PRETRAINED.
    pretrained: str = "none"
    weights: str | None = None  # local state dict to load into the backbone (offline alternative)
    # The input normalisation the weights expect (INPUT_NORMS): "caffe" (BGR, 0-255, minus the mean
    # pixel) or "torchvision" (RGB, 0-1, ImageNet mean/std). None = the one of model.pretrained;
    # a loaded config always has it filled in, so a run folder records what it trained with.
    input_norm: str | None = None
    pool_ceil: bool = False  # max-pooling output sizes round up, as Caffe's (vgg16: 600 px -> 38)
    roi_op: str = "pool"  # "pool" (RoI max pooling, the paper) or "align"
    roi_size: int = 7  # RoI pooling output size (roi_size x roi_size)
    head_dim: int = 256  # width of the tiny head's fc layers (vgg16 uses 4096 from fc6/fc7)
    box_norm: str = "fixed"  # box targets: "fixed" stds (0.1,0.1,0.2,0.2) or "data" (per class)
    # leading conv layers of the trunk that stay frozen; None = the backbone's own choice
    # (DEFAULT_FROZEN_CONVS)
    frozen_convs: int | None = None
    # "softmax" over K+1 classes (Fast R-CNN) or "sigmoid" per foreground class (focal's, with
    # RetinaNet's prior-probability bias init; sigmoid scores at test time). Set from the sampler
    # (samplers.regime.apply_regime): the classifier is part of the method.
    classifier: str = "softmax"


# The weight sources each backbone accepts for model.pretrained.
PRETRAINED_SOURCES = {
    "vgg16": ("caffe", "torchvision", "none"),
    "resnet18": ("torchvision", "none"),
    "tiny": ("shipped", "none"),
}
# model.pretrained used to be a boolean. A config.yaml written then still loads, with the meaning
# it had when it was written: true = torchvision's ImageNet weights (vgg16, resnet18) or the
# shipped weights (tiny), false = "none". (The paper preset's default is now "caffe", a choice.)
LEGACY_PRETRAINED = {"vgg16": "torchvision", "resnet18": "torchvision", "tiny": "shipped"}
# Each weight source's input normalisation; "none" (random weights) keeps torchvision's, as before.
SOURCE_INPUT_NORM = {"caffe": "caffe", "torchvision": "torchvision", "shipped": "torchvision"}
INPUT_NORMS = ("caffe", "torchvision")


def pretrained_source(cfg: ModelConfig) -> str:
    """``model.pretrained`` as a source name; a boolean (Python callers, old configs) is mapped by
    :data:`LEGACY_PRETRAINED`."""
    if isinstance(cfg.pretrained, bool):
        return LEGACY_PRETRAINED[cfg.backbone] if cfg.pretrained else "none"
    return cfg.pretrained


def input_norm(cfg: ModelConfig) -> str:
    """The input normalisation of a model: ``model.input_norm``, else its weights' own."""
    if cfg.input_norm is not None:
        return cfg.input_norm
    return SOURCE_INPUT_NORM.get(pretrained_source(cfg), "torchvision")


def _legacy_model_values(values: dict[str, Any]) -> dict[str, Any]:
    """The model section with an old boolean ``pretrained`` mapped to its source name."""
    flag = values.get("pretrained")
    if not isinstance(flag, bool):
        return values
    backbone = values.get("backbone", ModelConfig.backbone)
    if backbone not in LEGACY_PRETRAINED:
        return values  # validate_config names the unknown backbone
    return {**values, "pretrained": LEGACY_PRETRAINED[backbone] if flag else "none"}


# Each backbone's frozen conv layers when model.frozen_convs is None: vgg16 conv1_1 to conv2_2 as
# in the paper; tiny none; resnet18 conv1 and layer1's four convs, as detectron2 and torchvision.
DEFAULT_FROZEN_CONVS = {"vgg16": 4, "tiny": 0, "resnet18": 5}


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "fixed"  # a name of samplers.SAMPLERS, or a plugin (pkg.module:Class)
    # "reference": each sampler at the RoIs per image and foreground share its reference code
    # uses (samplers.regime.REGIMES); "common": every sampler at batch_rois and fg_fraction here
    regime: str = "reference"
    batch_rois: int = 128  # B, RoIs per mini-batch (B / N per image)
    fg_fraction: float = 0.25  # fixed and hnm: share of foreground RoIs
    fg_thresh: float = 0.5  # RoIs with max IoU >= this are foreground
    bg_lo: float = 0.1  # fixed and hnm: background needs max IoU >= this (ohem uses 0)
    ohem_nms: bool = True  # ohem: NMS over RoIs scored by loss before taking the top B/N
    ohem_nms_iou: float = 0.7  # ohem: IoU of that NMS
    ohem_nms_scope: str = "label"  # ohem: NMS per (image, label) (the release) or per "image"
    ohem_loss: str = "cls+box"  # ohem: rank by "cls+box" (paper) or "cls" (mmdetection)
    mine_every: int = 0  # hnm: iterations between mining passes (0 = once per epoch)
    hnm_fp_thresh: float = 0.5  # hnm: a background RoI is a false positive at this object score
    hnm_pool_per_image: int = 64  # hnm: most false positives kept per image
    hnm_pool: str = "accumulate"  # hnm: "accumulate" (add to the pool) or "replace" it each pass
    hnm_evict_thresh: float = 0.3  # hnm accumulate: a pooled RoI scored below this leaves the pool
    libra_bins: str = (
        "reference"  # libra: top bin edge = max IoU of any RoI, or "paper" (fg_thresh)
    )
    libra_num_bins: int = 3  # libra: IoU bins of the negatives
    focal_gamma: float = 2.0  # focal: the focusing parameter
    focal_alpha: float = 0.25  # focal (sigmoid): weight of the positive targets (mmdetection's)
    # focal: "sigmoid" over the foreground classes (mmdetection's FocalLoss, RetinaNet), or the
    # "softmax" variant over K+1 classes (no alpha)
    focal_form: str = "sigmoid"
    # focal: divide by the number of RoIs, as an R-CNN head does (mmdetection's BBoxHead.loss:
    # avg_factor = the sampled RoIs), or by the foreground count, as RetinaNet's anchors ("fg")
    focal_norm: str = "rois"
    focal_prior: float = 0.01  # focal (sigmoid): initial foreground probability (bias init)
    # The read-only ranking pass runs the head with dropout on, as the OHEM release's read-only
    # net does; mmdetection's heads have none (samplers.regime sets it per sampler)
    rank_dropout: bool = True
    pisa_k: float = 0.5  # pisa ISR-N: power of the weight mapping
    pisa_bias: float = 0.0  # pisa ISR-N: shift of the weight mapping
    pisa_score_thr: float = 0.05  # pisa ISR-N: a negative is valid above this foreground score
    pisa_iou_thr: float = 0.5  # pisa ISR-N: IoU of the NMS-match grouping
    pisa_isr_p: bool = True  # pisa: reweight positives by IoU-HLR (k 2, bias 0)
    pisa_carl: bool = True  # pisa: classification-aware regression loss (k 1, bias 0.2)
    # The precision of the passes that only rank RoIs (the read-only pass of ohem, ohem-mmdet,
    # pisa and plugins; hnm's mining pass): "bfloat16" autocasts them (RoI pooling stays float32).
    # float32 by default: bfloat16 changed 22% of ohem's choice on BCCD (README, measured figures)
    rank_dtype: str = "float32"


# The config keys a sampler's regime sets (samplers.regime): the budget under the reference
# regime, the method's keys in every regime. Two runs of one compare may differ in them by design
# (runs.settings.comparable_config leaves them out).
BUDGET_KEYS = ("sampler.batch_rois", "sampler.fg_fraction")
METHOD_KEYS = ("model.classifier", "sampler.rank_dropout")


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 40000  # SGD iterations
    images_per_batch: int = 2  # N, images per mini-batch
    lr: float = 0.001  # base learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0005  # L2 weight decay
    bias_lr_factor: float = 1.0  # lr multiplier of every bias (Caffe's lr_mult: 2 in the paper)
    bias_weight_decay: float | None = None  # weight decay of the biases bias_decay_scope names
    # (None = weight_decay): "all" biases, or only those of the "fc" layers (fc6, fc7, cls_score,
    # bbox_pred), as the OHEM prototxt, whose conv biases keep weight_decay
    bias_decay_scope: str = "all"
    lr_steps: tuple[int, ...] = (30000,)  # iterations at which the lr drops
    lr_gamma: float = 0.1  # factor of each drop
    warmup_iters: int = 0  # linear lr warm-up iterations (0 = none, as in the paper)
    seed: int = 1  # seed of weights, image order, flips and sampling
    device: str = "auto"  # "auto", "cpu" or "cuda"
    amp: bool = False  # mixed precision (CUDA only)
    checkpoint_every: int = (
        1000  # iterations between checkpoints (one is always written at the end)
    )
    log_every: int = 20  # iterations between metrics.jsonl lines
    eval_points: int = 0  # evenly spaced evaluations during training (for mAP vs wall-clock)
    # TensorBoard event files in RUN/tb/ (when the package is installed); not part of what makes
    # two runs comparable (runs.settings), nor of what a resume must match (runs.guard)
    tensorboard: bool = True


@dataclass(frozen=True)
class EvalConfig:
    nms: float = 0.3  # per-class NMS IoU at test time
    score_thresh: float = 0.05  # detections below this score are dropped
    max_dets: int = 100  # most detections kept per image
    metric: str = "voc07"  # "voc07", "voc10", "coco" or "all"
    # The test protocol by name (TEST_PROTOCOLS): "default" (100 over 0.05), "ohem-release" (2000
    # over 1e-5), "fast-rcnn" (Fast R-CNN's adaptive per-class thresholds; max_dets and
    # score_thresh unused) or "custom" (max_dets, score_thresh as given). None = named from
    # max_dets and score_thresh; a loaded config always has it filled in (recorded in the run).
    protocol: str | None = None


# The test protocols with fixed limits: name -> (max_dets, score_thresh).
TEST_PROTOCOLS = {"default": (100, 0.05), "ohem-release": (2000, 0.00001)}
# Fast R-CNN's test.py (rbgirshick/fast-rcnn at its first release; the OHEM paper's baseline):
# per-class thresholds that keep on average 40 detections per class per image over the test set,
# from at most 100 per class per image, before NMS.
FAST_RCNN_PER_CLASS = 40
FAST_RCNN_MAX_PER_IMAGE = 100


def protocol_name(cfg: EvalConfig) -> str:
    """``eval.protocol``, or the name that ``max_dets`` and ``score_thresh`` match ("custom")."""
    if cfg.protocol is not None:
        return cfg.protocol
    for name, limits in TEST_PROTOCOLS.items():
        if (cfg.max_dets, cfg.score_thresh) == limits:
            return name
    return "custom"


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


SECTIONS: dict[str, type] = {
    f.name: f.default_factory for f in dataclasses.fields(ExperimentConfig)
}  # type: ignore[misc]


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
    e = cfg.eval
    limits = TEST_PROTOCOLS.get(e.protocol or "")
    if limits is not None and (e.max_dets, e.score_thresh) != limits:
        raise UserError(
            f"{where}: eval.protocol {e.protocol} means max_dets {limits[0]} and score_thresh "
            f"{limits[1]:g}, not {e.max_dets} and {e.score_thresh:g} (protocol custom takes any)"
        )


def parse_config(
    text: str, where: str, overrides: dict[str, Any] | None = None, pairs: bool = True
) -> ExperimentConfig:
    """A config from YAML text with ``overrides`` laid over it, validated; errors name ``where``.

    ``pairs=False`` leaves out the checks of values that must fit each other (for one option
    tried alone: its partner may come from another option)."""
    raw = load_yaml(text, where)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of sections, got a {type(raw).__name__}")
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        if not isinstance(merged.setdefault(section, {}), dict):
            continue  # config_from_dict names the scalar section
        merged[section][key] = value
    return validate_config(config_from_dict(merged, where), where, pairs)


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load a YAML config (or the defaults) and apply ``overrides`` such as ``{"train.iters": 10}``.

    Overrides whose value is None are ignored, so CLI options left unset keep the YAML's value.
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
