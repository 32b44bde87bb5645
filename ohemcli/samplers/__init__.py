"""RoI samplers: which RoIs of a mini-batch the network trains on."""

from __future__ import annotations

from collections.abc import Callable

from ohemcli.config import SamplerConfig
from ohemcli.errors import UserError
from ohemcli.samplers.base import ImageRoIs, MinedNegatives, RoISampler
from ohemcli.samplers.fixed import FixedSampler
from ohemcli.samplers.hnm import HNMSampler
from ohemcli.samplers.ohem import OHEMSampler

SAMPLERS: dict[str, Callable[[SamplerConfig], RoISampler]] = {
    "fixed": FixedSampler,
    "hnm": HNMSampler,
    "ohem": OHEMSampler,
}


def build_sampler(cfg: SamplerConfig) -> RoISampler:
    """The sampler named by ``cfg.name``, with the background range it implies.

    ohem has no bg_lo: its background is every RoI with IoU in [0, 0.5).
    """
    if cfg.name not in SAMPLERS:
        raise UserError(f"--sampler: unknown '{cfg.name}' (choose from {', '.join(SAMPLERS)})")
    return SAMPLERS[cfg.name](cfg)


__all__ = ["SAMPLERS", "build_sampler", "ImageRoIs", "MinedNegatives", "RoISampler"]
