"""The allowed range of every config value, checked when a config is loaded.

``RULES`` maps each ``section.key`` of :mod:`ohemcli.config` to a rule. A test asserts that every
config field has one, so a new field cannot slip in unchecked: add its rule here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# A name that is safe as one path component: no separators, no "..", no control characters.
SAFE_NAME = re.compile(r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True)
class Number:
    """A finite number in [lo, hi] (or (lo, hi] with ``lo_open``); ints only with ``integer``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    integer: bool = False

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # an int is finite (and may
            return False  # be too large for a float: math.isfinite would overflow)
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or value <= self.hi

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.lo is None and self.hi is None:
            return kind
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf)" if self.hi is None else f"{_num(self.hi)}]"
        return f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}"


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def ok(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


@dataclass(frozen=True)
class Text:
    """A string; with ``name``, one safe path component (see SAFE_NAME)."""

    name: bool = False

    def ok(self, value: Any) -> bool:
        if not isinstance(value, str) or not value or "\x00" in value:
            return False
        return not self.name or SAFE_NAME.match(value) is not None

    def describe(self) -> str:
        if self.name:
            return "a name without '/', '\\', '..' or control characters"
        return "a non-empty string"


@dataclass(frozen=True)
class DataRoot(Text):
    """A data root: a folder, ``synth``, or COCO json files as ``a.json,b.json``; no part of a
    comma list may be empty (it would read as the working folder)."""

    def ok(self, value: Any) -> bool:
        return super().ok(value) and all(part.strip() for part in value.split(","))

    def describe(self) -> str:
        return "a folder, 'synth', or json files as a.json,b.json without an empty part"


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class OrNone:
    """None, or a value that ``inner`` accepts."""

    inner: Number | Choice | Text

    def ok(self, value: Any) -> bool:
        return value is None or self.inner.ok(value)

    def describe(self) -> str:
        return f"null or {self.inner.describe()}"


@dataclass(frozen=True)
class Items:
    """A list of values that ``inner`` accepts; ``distinct`` and ``rising`` add conditions."""

    inner: Number | Text
    distinct: bool = False
    rising: bool = False
    allow_none: bool = False

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.allow_none
        if not isinstance(value, (list, tuple)) or not all(self.inner.ok(v) for v in value):
            return False
        if self.distinct and (not value or len(set(value)) != len(value)):
            return False
        return not self.rising or all(a < b for a, b in zip(value[:-1], value[1:], strict=True))

    def describe(self) -> str:
        what = "a rising list" if self.rising else "a list"
        what += " of distinct values" if self.distinct else ""
        return f"{'null or ' if self.allow_none else ''}{what}, each {self.inner.describe()}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


Rule = Number | Choice | Text | DataRoot | Flag | OrNone | Items

COUNT = Number(lo=1, integer=True)  # a positive count
COUNT0 = Number(lo=0, integer=True)  # a count that may be 0
FRACTION = Number(lo=0.0, hi=1.0)  # a share in [0, 1]
IOU = Number(lo=0.0, hi=1.0, lo_open=True)  # an IoU threshold in (0, 1]
POSITIVE = Number(lo=0.0, lo_open=True)  # a finite float > 0
NONNEG = Number(lo=0.0)  # a finite float >= 0
PIXELS = Number(lo=1, hi=10000, integer=True)  # an image side in pixels
# A count of iterations: up to 10 million, 100x a long COCO schedule. A larger count is a typo
# that would otherwise show up only as an lr schedule and ETA of years.
ITERS = Number(lo=1, hi=10_000_000, integer=True)

RULES: dict[str, Rule] = {
    "data.root": DataRoot(),
    "data.images": OrNone(Text()),
    "data.train_split": Text(name=True),
    "data.test_split": Text(name=True),
    "data.train_images": COUNT0,
    "data.classes": Items(Text(name=True), distinct=True, allow_none=True),
    "data.proposals": Text(),
    "data.max_proposals": Number(lo=0, integer=True),  # 0 = every box
    "data.ss_max_side": Number(lo=0, hi=10000, integer=True),
    "data.scale": PIXELS,
    "data.max_size": PIXELS,
    "data.flip": Flag(),
    "data.use_difficult": Flag(),
    "data.keep_empty": Flag(),
    "data.workers": Number(lo=0, hi=256, integer=True),
    "model.backbone": Choice(("vgg16", "tiny", "resnet18")),
    "model.pretrained": Choice(("caffe", "torchvision", "shipped", "none")),
    "model.input_norm": OrNone(Choice(("caffe", "torchvision"))),
    "model.pool_ceil": Flag(),
    "model.weights": OrNone(Text()),
    "model.roi_op": Choice(("pool", "align")),
    "model.roi_size": Number(lo=1, hi=64, integer=True),
    "model.head_dim": COUNT,
    "model.box_norm": Choice(("fixed", "data")),
    "model.frozen_convs": OrNone(Number(lo=0, hi=64, integer=True)),
    "model.classifier": Choice(("softmax", "sigmoid")),
    "model.detector": Choice(("fast-rcnn", "faster-rcnn")),
    "model.rpn_anchor_sizes": Items(PIXELS, distinct=True, rising=True, allow_none=True),
    "model.rpn_aspect_ratios": Items(POSITIVE, distinct=True, rising=True),
    "model.rpn_batch_anchors": COUNT,
    "model.rpn_fg_fraction": FRACTION,
    "model.rpn_fg_iou": IOU,
    "model.rpn_bg_iou": FRACTION,
    "model.rpn_nms": IOU,
    "model.rpn_pre_nms_train": COUNT,
    "model.rpn_post_nms_train": COUNT,
    "model.rpn_pre_nms_test": COUNT,
    "model.rpn_post_nms_test": COUNT,
    # Sampler names live in samplers.SAMPLERS; cli.overrides checks them (config imports no torch).
    "sampler.name": Text(name=True),  # a built-in name or a plugin (pkg.module:Class)
    "sampler.regime": Choice(("reference", "common")),
    "sampler.batch_rois": COUNT,
    "sampler.fg_fraction": FRACTION,
    "sampler.fg_thresh": IOU,
    "sampler.bg_lo": FRACTION,
    "sampler.ohem_nms": Flag(),
    "sampler.ohem_nms_iou": IOU,
    "sampler.ohem_nms_scope": Choice(("label", "image")),
    "sampler.ohem_loss": Choice(("cls+box", "cls")),
    "sampler.rank_dtype": Choice(("float32", "bfloat16")),
    "sampler.mine_every": COUNT0,
    "sampler.hnm_fp_thresh": FRACTION,
    "sampler.hnm_pool_per_image": COUNT,
    "sampler.hnm_pool": Choice(("accumulate", "replace")),
    "sampler.hnm_evict_thresh": FRACTION,
    "sampler.libra_bins": Choice(("reference", "paper")),
    "sampler.libra_num_bins": COUNT,
    "sampler.focal_gamma": NONNEG,
    "sampler.focal_alpha": FRACTION,
    "sampler.focal_form": Choice(("sigmoid", "softmax")),
    "sampler.focal_norm": Choice(("rois", "fg")),
    "sampler.focal_prior": Number(lo=0.0, hi=0.999, lo_open=True),
    "sampler.rank_dropout": Flag(),
    "sampler.pisa_k": POSITIVE,
    "sampler.pisa_bias": FRACTION,
    "sampler.pisa_score_thr": FRACTION,
    "sampler.pisa_iou_thr": IOU,
    "sampler.pisa_isr_p": Flag(),
    "sampler.pisa_carl": Flag(),
    "train.iters": ITERS,
    "train.images_per_batch": COUNT,
    "train.lr": POSITIVE,
    "train.momentum": FRACTION,
    "train.weight_decay": NONNEG,
    "train.bias_lr_factor": POSITIVE,
    "train.bias_weight_decay": OrNone(NONNEG),
    "train.bias_decay_scope": Choice(("all", "fc")),
    "train.lr_steps": Items(ITERS, rising=True),
    "train.lr_gamma": POSITIVE,
    "train.warmup_iters": COUNT0,
    "train.seed": Number(lo=0, hi=2**32 - 1, integer=True),
    "train.device": Choice(("auto", "cpu", "cuda")),
    "train.amp": Flag(),
    "train.checkpoint_every": COUNT,
    "train.log_every": COUNT,
    "train.eval_points": COUNT0,
    "train.tf32": Flag(),
    "train.dist_timeout_s": Number(lo=1.0, hi=7 * 24 * 3600.0),
    "train.tensorboard": Flag(),
    "eval.nms": IOU,
    "eval.score_thresh": FRACTION,
    "eval.max_dets": COUNT,
    "eval.metric": Choice(("voc07", "voc10", "coco", "all")),
    "eval.protocol": OrNone(Choice(("default", "ohem-release", "fast-rcnn", "custom"))),
}


def check_value(key: str, value: Any) -> str | None:
    """None when ``value`` is allowed for ``key``, else what is allowed."""
    rule = RULES[key]
    return None if rule.ok(value) else rule.describe()
