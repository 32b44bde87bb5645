"""Each built-in sampler's regime: the budget, loss and scoring its reference code runs it with.

A sampler is more than its ``select``: mmdetection's OHEM at the Fast R-CNN release's 64 RoIs
per image is a regime nobody runs (its 16-positive quota binds on every image and the
classifier collapses onto the class prior). So every built-in sampler names, as data, the
settings of the reference it follows, and :func:`apply_regime` puts them into a run's config:

- ``reference`` (the default): the sampler's own RoIs per image and foreground share;
- ``common``: every sampler on the config's one budget (``sampler.batch_rois`` and
  ``fg_fraction``), for a compare that holds the budget fixed.

What is the method itself, and not its budget, applies in both: focal's sigmoid classifier
(prior-initialised, sigmoid scores at test time) and whether the ranking pass keeps dropout on.
The test protocol is the benchmark's, never the sampler's: every row of a compare is scored with
one score floor and one cap, so that their mAPs compare (``score_floor`` records the
reference's own, for the docs).

A plugin may declare ``regime = Regime(...)`` on its class; without one it runs in the common
regime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ohemcli.config import BUDGET_KEYS, METHOD_KEYS, ExperimentConfig
from ohemcli.errors import UserError

__all__ = ["BUDGET_KEYS", "METHOD_KEYS", "REGIMES", "Regime", "apply_regime", "regime_record"]


@dataclass(frozen=True)
class Regime:
    """The settings a sampler's reference code runs it with.

    ``rois_per_image`` None: every RoI of the image (no budget); ``fg_fraction`` None: no
    foreground quota. ``bg_range`` is the background's max-IoU range the sampler draws from.
    ``loss`` and ``normaliser`` say how the chosen RoIs' loss is formed and divided;
    ``scoring`` how test-time scores come from the logits; ``score_floor`` the reference's own
    test-time floor (recorded, not applied: see the module docstring). ``rank_dropout``: the
    read-only ranking pass runs the head with dropout on (None: no ranking pass).
    """

    rois_per_image: int | None
    fg_fraction: float | None
    bg_range: tuple[float, float]
    loss: str
    normaliser: str
    scoring: str
    score_floor: float
    rank_dropout: bool | None
    reference: str

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the run's summary and the report."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


FAST_RCNN = "rbgirshick/fast-rcnn lib/fast_rcnn/config.py, lib/roi_data_layer/minibatch.py"
MMDET_HEAD = "mmdet/models/roi_heads/bbox_heads/bbox_head.py (loss over the sampled RoIs)"

# The Fast R-CNN release's 128 RoIs per 2-image mini-batch; mmdetection's R-CNN configs sample
# 512 per image (configs/_base_/models/faster-rcnn_r50_fpn.py, train_cfg.rcnn.sampler).
REGIMES: dict[str, Regime] = {
    "fixed": Regime(64, 0.25, (0.1, 0.5), "softmax CE + smooth L1", "chosen RoIs", "softmax",
                    0.05, None, FAST_RCNN),
    "hnm": Regime(64, 0.25, (0.1, 0.5), "softmax CE + smooth L1", "chosen RoIs", "softmax",
                  0.05, None, f"{FAST_RCNN}; the pool is ohemcli's (no reference code)"),
    "ohem": Regime(64, None, (0.0, 0.5), "softmax CE + smooth L1, ranked by both",
                   "chosen RoIs", "softmax", 1e-5, True,
                   "abhi2610/ohem lib/roi_data_layer/layer.py, models/*/solver_ohem.prototxt"),
    "ohem-mmdet": Regime(512, 0.25, (0.0, 0.5), "softmax CE + smooth L1, ranked by CE",
                         "chosen RoIs", "softmax", 0.05, False,
                         "mmdet/models/task_modules/samplers/ohem_sampler.py, "
                         "configs/faster_rcnn/faster-rcnn_r50_fpn_ohem_1x_coco.py"),
    "libra": Regime(512, 0.25, (0.0, 0.5), "softmax CE + smooth L1 (not balanced L1)",
                    "chosen RoIs", "softmax", 0.05, None,
                    "mmdet/models/task_modules/samplers/iou_balanced_neg_sampler.py, "
                    "configs/libra_rcnn/libra-faster-rcnn_r50_fpn_1x_coco.py"),
    "pisa": Regime(512, 0.25, (0.0, 0.5), "softmax CE x ISR + smooth L1 + CARL", "chosen RoIs",
                   "softmax", 0.05, False,
                   "mmdet/models/task_modules/samplers/score_hlr_sampler.py, "
                   "configs/pisa/faster-rcnn_r50_fpn_pisa_1x_coco.py"),
    "sampling-free": Regime(None, None, (0.0, 0.5), "guided softmax CE + smooth L1",
                            "every RoI (box: foreground deltas)", "softmax", 1e-4, None,
                            "ChenJoya/sampling-free maskrcnn_benchmark/.../box_head/loss.py"),
    "focal": Regime(None, None, (0.0, 0.5), "sigmoid focal (alpha 0.25, gamma 2) + smooth L1",
                    "every RoI", "sigmoid", 0.05, None,
                    f"mmdet/models/losses/focal_loss.py, {MMDET_HEAD}"),
}  # fmt: skip


PY_FASTER_RCNN = (
    "rbgirshick/py-faster-rcnn lib/fast_rcnn/config.py (TRAIN.BATCH_SIZE 128 per image), "
    "lib/rpn/proposal_target_layer.py"
)
# Under faster-rcnn, Fast R-CNN's sampler is the one Faster R-CNN's release runs in its RoI head:
# the same rule at 128 RoIs per image. hnm keeps fixed's budget; ohem and the later samplers keep
# their own references (the OHEM release has no RPN; mmdetection's configs are Faster R-CNN's).
FASTER_RCNN_REGIMES: dict[str, Regime] = {
    "fixed": dataclasses.replace(REGIMES["fixed"], rois_per_image=128, reference=PY_FASTER_RCNN),
    "hnm": dataclasses.replace(
        REGIMES["hnm"],
        rois_per_image=128,
        reference=f"{PY_FASTER_RCNN}; the pool is ohemcli's (no reference code)",
    ),
}


def sampler_regime(name: str, detector: str = "fast-rcnn") -> Regime | None:
    """The regime a sampler declares: a built-in's from :data:`REGIMES` (under ``detector``
    faster-rcnn, :data:`FASTER_RCNN_REGIMES` first), a plugin's class attribute ``regime`` (None
    when it declares none, or is not a known sampler)."""
    if detector == "faster-rcnn" and name in FASTER_RCNN_REGIMES:
        return FASTER_RCNN_REGIMES[name]
    if name in REGIMES:
        return REGIMES[name]
    from ohemcli.samplers.plugins import is_plugin_name, locate

    if not is_plugin_name(name):
        return None
    target, _ = locate(name)
    regime = getattr(target, "regime", None)
    if regime is not None and not isinstance(regime, Regime):
        raise UserError(f"{name}: its regime must be an ohemcli.samplers.regime.Regime")
    return regime


def classifier_of(cfg: ExperimentConfig) -> str:
    """The classifier a sampler's method trains: sigmoid for focal in its published form, else
    softmax."""
    s = cfg.sampler
    return "sigmoid" if s.name == "focal" and s.focal_form == "sigmoid" else "softmax"


def apply_regime(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with its sampler's regime in it: always the method's keys (:data:`METHOD_KEYS`),
    and under ``sampler.regime: reference`` also the budget (:data:`BUDGET_KEYS`: RoIs per
    image times ``train.images_per_batch``, and the foreground share). Idempotent."""
    regime = sampler_regime(cfg.sampler.name, cfg.model.detector)
    sampler = cfg.sampler
    rank_dropout = sampler.rank_dropout
    if regime is not None and regime.rank_dropout is not None:
        rank_dropout = regime.rank_dropout
    sampler = dataclasses.replace(sampler, rank_dropout=rank_dropout)
    if sampler.regime == "reference" and regime is not None:
        if regime.rois_per_image is not None:
            batch = regime.rois_per_image * cfg.train.images_per_batch
            sampler = dataclasses.replace(sampler, batch_rois=batch)
        if regime.fg_fraction is not None:
            sampler = dataclasses.replace(sampler, fg_fraction=regime.fg_fraction)
    model = dataclasses.replace(cfg.model, classifier=classifier_of(cfg))
    return dataclasses.replace(cfg, sampler=sampler, model=model)


def budget_note(cfg: ExperimentConfig) -> str | None:
    """One line when the reference regime overrides the config's own budget for this sampler
    (a config that sets ``sampler.batch_rois`` for speed would otherwise be ignored silently);
    None when nothing changes."""
    regime = sampler_regime(cfg.sampler.name, cfg.model.detector)
    if cfg.sampler.regime != "reference" or regime is None or regime.rois_per_image is None:
        return None
    n, s = cfg.train.images_per_batch, cfg.sampler
    share = s.fg_fraction if regime.fg_fraction is None else regime.fg_fraction
    if regime.rois_per_image * n == s.batch_rois and share == s.fg_fraction:
        return None
    return (
        f"{s.name}: its reference regime trains {regime.rois_per_image} RoIs per image"
        f"{'' if regime.fg_fraction is None else f' at {regime.fg_fraction:.0%} foreground'}, "
        f"not the config's {s.batch_rois // max(1, n)} at {s.fg_fraction:.0%} "
        "(--regime common keeps the config's)"
    )


def regime_record(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a run records of its regime (summary.json ``regime``): the mode, the budget it ran
    at, its classifier, and the reference its sampler follows (None for a plugin without one)."""
    regime = sampler_regime(cfg.sampler.name, cfg.model.detector)
    ran_reference = cfg.sampler.regime == "reference" and regime is not None
    every_roi = regime is not None and regime.rois_per_image is None  # no budget in any regime
    per_image = cfg.sampler.batch_rois // max(1, cfg.train.images_per_batch)
    return {
        "mode": "reference" if ran_reference else "common",
        "rois_per_image": None if every_roi else per_image,
        "fg_fraction": cfg.sampler.fg_fraction,
        "classifier": cfg.model.classifier,
        "reference": regime.reference if regime is not None else None,
    }
