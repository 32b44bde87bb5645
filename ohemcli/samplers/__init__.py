"""RoI samplers: which RoIs of a mini-batch the network trains on.

``SAMPLERS`` is the one list of sampler names: it maps each name to the function that builds that
sampler from a :class:`~ohemcli.config.SamplerConfig`; ``SamplerName`` (the CLI choice) derives
from it. Each sampler's constructor takes only the numbers it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.samplers.base import (
    ImageRoIs,
    MinedNegatives,
    MiningRequest,
    MiningSampler,
    RoISampler,
)
from ohemcli.samplers.fixed import FixedSampler
from ohemcli.samplers.hnm import HNMSampler
from ohemcli.samplers.ohem import OHEMSampler


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


def _ohem(c: SamplerConfig) -> OHEMSampler:
    # ohem has no bg_lo and no fg share: its background is every RoI with IoU in [0, fg_thresh).
    return OHEMSampler(c.ohem_nms_iou if c.ohem_nms else None, c.ohem_nms_scope, c.ohem_loss)


SAMPLERS: dict[str, Callable[[SamplerConfig], RoISampler]] = {
    "fixed": _fixed,
    "hnm": _hnm,
    "ohem": _ohem,
}

SamplerName = Enum("SamplerName", {name: name for name in SAMPLERS}, type=str)  # type: ignore[misc]
SamplerName.__doc__ = "Sampler choice for the CLI (the names of ``SAMPLERS``)."


def check_sampler_names(names: Sequence[str]) -> None:
    """Refuse ``--samplers`` names that are not in ``SAMPLERS``, naming each one."""
    unknown = [name for name in names if name not in SAMPLERS]
    if unknown:
        raise UserError(
            f"--samplers: unknown {', '.join(unknown)} (choose from {', '.join(SAMPLERS)})"
        )


def build_sampler(cfg: SamplerConfig) -> RoISampler:
    """The sampler named by ``cfg.name``, built from the config's numbers that it uses."""
    if cfg.name not in SAMPLERS:
        raise UserError(f"sampler.name: unknown '{cfg.name}' (choose from {', '.join(SAMPLERS)})")
    return SAMPLERS[cfg.name](cfg)


__all__ = [
    "SAMPLERS",
    "FixedSampler",
    "HNMSampler",
    "OHEMSampler",
    "SamplerName",
    "build_sampler",
    "check_sampler_names",
    "ImageRoIs",
    "MinedNegatives",
    "MiningRequest",
    "MiningSampler",
    "RoISampler",
]
