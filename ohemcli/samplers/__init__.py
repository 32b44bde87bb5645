"""RoI samplers: which RoIs of a mini-batch the network trains on, and how they count.

``SAMPLERS`` is the one list of built-in sampler names: it maps each name to the function that
builds that sampler from a :class:`~ohemcli.config.SamplerConfig`; ``SamplerName`` (the CLI
choice) derives from it. Each sampler's constructor takes only the numbers it uses. A name that
is an import path (``pkg.module:Class``) or an entry point of the group ``ohemcli.samplers`` is
the user's own sampler (``samplers.plugins``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from ohemcli.config import SamplerConfig
from ohemcli.config_rules import check_value
from ohemcli.errors import UserError, quote
from ohemcli.samplers.base import (
    ImageRoIs,
    MinedNegatives,
    MiningRequest,
    MiningSampler,
    RoISampler,
    Selection,
)
from ohemcli.samplers.every_roi import EveryRoISampler
from ohemcli.samplers.fixed import FixedSampler
from ohemcli.samplers.hnm import HNMSampler
from ohemcli.samplers.libra import LibraSampler
from ohemcli.samplers.ohem import OHEMSampler
from ohemcli.samplers.ohem_mmdet import MMDetOHEMSampler
from ohemcli.samplers.pisa import PISASampler
from ohemcli.samplers.plugins import build_plugin, is_plugin_name, warn_shadowed


def _fixed(c: SamplerConfig) -> FixedSampler:
    return FixedSampler(c.fg_fraction, c.fg_thresh, c.bg_lo)


def _hnm(c: SamplerConfig) -> HNMSampler:
    return HNMSampler(
        c.fg_fraction,
        c.fg_thresh,
        c.bg_lo,
        c.hnm_fp_thresh,
        c.hnm_pool_per_image,
        c.hnm_pool,
        c.hnm_evict_thresh,
    )


def own_settings(c: SamplerConfig, prefix: str) -> dict[str, Any]:
    """The keys of ``c`` that start with ``prefix``, without it: a sampler's own settings,
    named by the config (``ohem_nms_iou`` -> ``nms_iou``), so that each is spelled only there."""
    return {
        f.name[len(prefix) :]: getattr(c, f.name)
        for f in dataclasses.fields(c)
        if f.name.startswith(prefix)
    }


def _ohem(c: SamplerConfig) -> OHEMSampler:
    # ohem has no bg_lo and no fg share: its background is every RoI with IoU in [0, fg_thresh).
    own = own_settings(c, "ohem_")  # nms, nms_iou, nms_scope, loss
    return OHEMSampler(own["nms_iou"] if own["nms"] else None, own["nms_scope"], own["loss"])


def _pisa(c: SamplerConfig) -> PISASampler:
    return PISASampler(
        c.fg_fraction,
        c.pisa_k,
        c.pisa_bias,
        c.pisa_score_thr,
        c.pisa_iou_thr,
        c.pisa_isr_p,
        c.pisa_carl,
    )


# The mmdetection-derived samplers take every background RoI (IoU in [0, fg_thresh)), as
# mmdetection's assigner does: bg_lo is fixed's and hnm's alone.
SAMPLERS: dict[str, Callable[[SamplerConfig], RoISampler]] = {
    "fixed": _fixed,
    "hnm": _hnm,
    "ohem": _ohem,
    "ohem-mmdet": lambda c: MMDetOHEMSampler(c.fg_fraction),
    "libra": lambda c: LibraSampler(c.fg_fraction, c.fg_thresh, c.libra_num_bins, c.libra_bins),
    "pisa": _pisa,
    "sampling-free": lambda c: EveryRoISampler("guided"),
    "focal": lambda c: EveryRoISampler(
        "focal" if c.focal_form == "sigmoid" else "softmax-focal",
        c.focal_gamma,
        c.focal_alpha,
        c.focal_norm,
    ),
}

# A functional Enum over a computed dict: mypy cannot list its members.
SamplerName = Enum("SamplerName", {name: name for name in SAMPLERS}, type=str)  # type: ignore[misc]
SamplerName.__doc__ = "Sampler choice for the CLI (the names of ``SAMPLERS``)."


def check_sampler_names(names: Sequence[str]) -> None:
    """Refuse ``--samplers`` names that are neither in ``SAMPLERS`` nor a plugin, naming each
    one; import and construct every plugin now, so that a broken one stops before any work."""
    unknown = [name for name in names if name not in SAMPLERS and not is_plugin_name(name)]
    if unknown:
        raise UserError(
            f"--samplers: unknown {', '.join(unknown)} (choose from {', '.join(SAMPLERS)}, "
            "or give your own as pkg.module:Class)"
        )
    for name in names:
        if name not in SAMPLERS:
            build_plugin(SamplerConfig(name=name))
        else:
            warn_shadowed(name)


def build_sampler(cfg: SamplerConfig) -> RoISampler:
    """The sampler named by ``cfg.name``, built from the config's numbers that it uses.

    A value out of its key's range is one line naming the key, by the rule that checks a YAML
    file (a config built in Python has not met those checks)."""
    for f in dataclasses.fields(cfg):
        key, value = f"sampler.{f.name}", getattr(cfg, f.name)
        allowed = check_value(key, value) if f.name != "name" else None
        if allowed is not None:
            raise UserError(f"{key} = {quote(value)} is not allowed; expected {allowed}")
    if cfg.name in SAMPLERS:
        warn_shadowed(cfg.name)
        return SAMPLERS[cfg.name](cfg)
    if is_plugin_name(cfg.name):
        return build_plugin(cfg)
    raise UserError(f"sampler.name: unknown '{cfg.name}' (choose from {', '.join(SAMPLERS)})")


__all__ = [
    "SAMPLERS",
    "EveryRoISampler",
    "FixedSampler",
    "HNMSampler",
    "LibraSampler",
    "MMDetOHEMSampler",
    "OHEMSampler",
    "PISASampler",
    "SamplerName",
    "Selection",
    "build_sampler",
    "check_sampler_names",
    "ImageRoIs",
    "MinedNegatives",
    "MiningRequest",
    "MiningSampler",
    "RoISampler",
]
