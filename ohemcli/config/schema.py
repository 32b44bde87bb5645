"""The config's schema: one frozen dataclass per section, and the tables its values refer to.

A config has five sections (``data``, ``model``, ``sampler``, ``train``, ``eval``); each field's
comment says what it means, and :mod:`ohemcli.config_rules` holds its allowed range. Loading YAML
and overrides is :mod:`ohemcli.config.loading`; derived settings are :mod:`ohemcli.config.derived`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import cast


@dataclass(frozen=True)
class DataConfig:
    # "synth" (built-in synthetic set), a VOC-format root, a COCO set's folder (COCO's or
    # Roboflow's layout) or COCO json files "train.json,test.json" (see data.coco.layout)
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
    # weights) or "none" (random). A boolean reads as BACKBONE_WEIGHTS.
    pretrained: str = "none"
    weights: str | None = None  # local state dict to load into the backbone (offline alternative)
    # The input normalisation the weights expect: "caffe" (BGR, 0-255, minus the mean
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
    # Where the RoIs come from: "fast-rcnn" (selective search, or the release's boxes, computed
    # once per image) or "faster-rcnn" (a region proposal network on the trunk's feature map,
    # trained jointly with the RoI head: Ren et al. 2015, approximate joint training)
    detector: str = "fast-rcnn"
    # faster-rcnn's RPN, after py-faster-rcnn's lib/fast_rcnn/config.py (its names in capitals)
    # anchor sides in input pixels; None = the reference's (128, 256, 512) at 600 px, scaled to
    # data.scale (RPN_ANCHOR_SCALES 8, 16, 32 on a stride-16 map)
    rpn_anchor_sizes: tuple[int, ...] | None = None
    rpn_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height/width (ANCHOR_RATIOS)
    rpn_batch_anchors: int = 256  # anchors sampled per image for the RPN loss (RPN_BATCHSIZE)
    rpn_fg_fraction: float = 0.5  # their foreground share (RPN_FG_FRACTION)
    rpn_fg_iou: float = 0.7  # an anchor is foreground at IoU >= this (RPN_POSITIVE_OVERLAP)
    rpn_bg_iou: float = 0.3  # and background under this (RPN_NEGATIVE_OVERLAP)
    rpn_nms: float = 0.7  # NMS over the proposals (RPN_NMS_THRESH)
    rpn_pre_nms_train: int = 12000  # training: top-scoring anchors into NMS (RPN_PRE_NMS_TOP_N)
    rpn_post_nms_train: int = 2000  # training: proposals kept after NMS (RPN_POST_NMS_TOP_N)
    rpn_pre_nms_test: int = 6000  # test: top-scoring anchors into NMS (TEST.RPN_PRE_NMS_TOP_N)
    rpn_post_nms_test: int = 300  # test: proposals kept after NMS (TEST.RPN_POST_NMS_TOP_N)


# py-faster-rcnn's anchors at its 600-px scale: base 16 x scales (8, 16, 32).
REFERENCE_ANCHOR_SIZES = (128, 256, 512)
REFERENCE_ANCHOR_SCALE = 600


def anchor_sizes(model: ModelConfig, scale: int) -> tuple[int, ...]:
    """``model.rpn_anchor_sizes``, else the reference's sizes scaled from 600 px to ``scale``."""
    if model.rpn_anchor_sizes is not None:
        return tuple(model.rpn_anchor_sizes)
    return tuple(max(1, round(s * scale / REFERENCE_ANCHOR_SCALE)) for s in REFERENCE_ANCHOR_SIZES)


# The weight sources each backbone accepts for model.pretrained.
PRETRAINED_SOURCES = {
    "vgg16": ("caffe", "torchvision", "none"),
    "resnet18": ("torchvision", "none"),
    "tiny": ("shipped", "none"),
}
# Each backbone's own weights: the ImageNet weights that download on their own, and tiny's shipped
# ones. Choosing another backbone means these (config.resolve), and a boolean model.pretrained
# (a config.yaml of an early version) reads true as these.
BACKBONE_WEIGHTS = {"vgg16": "torchvision", "resnet18": "torchvision", "tiny": "shipped"}
# Each weight source's input normalisation; "none" (random weights) keeps torchvision's.
SOURCE_INPUT_NORM = {"caffe": "caffe", "torchvision": "torchvision", "shipped": "torchvision"}


def pretrained_source(cfg: ModelConfig) -> str:
    """``model.pretrained`` as a source name; a boolean (Python callers, old configs) is mapped by
    :data:`BACKBONE_WEIGHTS`."""
    if isinstance(cfg.pretrained, bool):
        return BACKBONE_WEIGHTS[cfg.backbone] if cfg.pretrained else "none"
    return cfg.pretrained


def input_norm(cfg: ModelConfig) -> str:
    """The input normalisation of a model: ``model.input_norm``, else its weights' own."""
    if cfg.input_norm is not None:
        return cfg.input_norm
    return SOURCE_INPUT_NORM.get(pretrained_source(cfg), "torchvision")


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
    # float32 by default: bfloat16 changed 22% of ohem's choice on BCCD (experiments/README.md,
    # measured figures)
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
    # TF32 for CUDA matmuls and cuDNN convolutions (Ampere and later). Off by default: a run's
    # config says float32 and it then is float32 on every GPU generation, as the release trained
    # (cuDNN's own default would be TF32 convolutions, so this is set, never left to torch).
    tf32: bool = False
    # Seconds a torchrun rank waits for the others (rank 0's evaluation, a failed rank) before
    # it stops with one line. NCCL's 10-minute default is shorter than a first VOC07 evaluation.
    dist_timeout_s: float = 3600.0
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
    f.name: cast(type, f.default_factory) for f in dataclasses.fields(ExperimentConfig)
}
