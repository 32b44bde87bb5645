"""Offline hard negative mining with an epoch-level false-positive pool.

Until the first mining pass this is exactly ``fixed``. After each pass (run by the trainer, see
``engine.mining``), each image's negatives come first from its pool of false positives, then from
random background in [bg_lo, 0.5). Each pass replaces the pool, so RoIs that stopped being hard
drop out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ohemcli.model.fast_rcnn import RoILosses
from ohemcli.samplers.base import ImageRoIs, MinedNegatives
from ohemcli.samplers.fixed import sample_fg_bg


class HNMSampler:
    """``fixed`` with negatives drawn first from the mined false-positive pool."""

    needs_roi_losses = False
    needs_mining = True

    def __init__(
        self, fg_fraction: float = 0.25, fg_thresh: float = 0.5, bg_lo: float = 0.1
    ) -> None:
        """The numbers of ``fixed`` (see :class:`~ohemcli.samplers.fixed.FixedSampler`)."""
        self.fg_fraction, self.fg_thresh, self.bg_lo = fg_fraction, fg_thresh, bg_lo
        self.pool = MinedNegatives()

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """25% foreground; negatives from the image's pool first, then random background."""
        pooled = self.pool.per_image.get(rois.image_id)
        preferred = None if pooled is None else pooled[0].to(rois.labels.device)
        return sample_fg_bg(
            rois.labels,
            rois.max_iou,
            num,
            self.fg_fraction,
            self.bg_lo,
            self.fg_thresh,
            gen,
            preferred_bg=preferred,
        )

    def after_epoch(self, mined: MinedNegatives | None) -> None:
        """Replace the pool with the latest mining pass."""
        if mined is not None:
            self.pool = mined

    def state_dict(self) -> dict[str, Any]:
        """The pool, as plain dicts of tensors (loadable with ``weights_only=True``)."""
        return {"pool": {k: {"index": i, "score": s} for k, (i, s) in self.pool.per_image.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the pool."""
        pool = state.get("pool", {})
        self.pool = MinedNegatives({k: (v["index"], v["score"]) for k, v in pool.items()})
