"""Offline hard negative mining with an epoch-level false-positive pool.

Until the first mining pass this is exactly ``fixed``. After each pass (run by the trainer, see
``engine.mining``), each image's negatives come first from its pool of false positives, then from
random background in [bg_lo, 0.5).

``pool="accumulate"`` (the default) keeps a cache of hard negatives as R-CNN's bootstrapping did
(rbgirshick/rcnn, ``rcnn_train.m``): the false positives of each pass (object score >=
``fp_thresh``) join the pool, a pooled RoI that the latest pass scores below ``evict_thresh``
leaves it, and the per-image cap keeps the highest latest scores. R-CNN adds at a higher score
than it evicts (-1.0 against -1.2 on its SVM scores); with ``evict_thresh == fp_thresh`` the pool
would be exactly the latest pass's false positives, i.e. ``pool="replace"``, which replaces the
pool with each pass's false positives. (An ``evict_thresh`` above ``fp_thresh`` acts as
``fp_thresh``: a RoI scored at or above ``fp_thresh`` is found again as a false positive.)

Under faster-rcnn an image's RoIs are new proposals at every iteration, so a position names no
RoI from one iteration to the next: the pool holds boxes instead (``pooled_boxes``). The step adds
an image's pooled boxes after its proposals and ground truth, and hnm prefers them as negatives;
the mining pass scores the current RPN's proposals (at the training counts) and the pooled boxes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ohemcli.errors import UserError
from ohemcli.model.losses import RoILosses
from ohemcli.samplers.base import ImageRoIs, MinedNegatives, MiningRequest, SamplerBase
from ohemcli.samplers.fixed import sample_fg_bg

POOL_MODES = ("accumulate", "replace")


def merge_pool(
    pooled: Tensor | None,
    rescored: Tensor | None,
    new: tuple[Tensor, Tensor] | None,
    evict_thresh: float,
    cap: int,
) -> tuple[Tensor, Tensor]:
    """One image's pool after a mining pass: positions and latest scores, highest first.

    Args:
        pooled: positions of the RoIs in the pool before the pass (None: empty pool).
        rescored: the pass's object scores of ``pooled`` (same order).
        new: the pass's false positives (positions, scores).
        evict_thresh: a pooled RoI scored below this leaves the pool.
        cap: most RoIs kept; the highest scores stay (ties: pooled RoIs first, then lower
            position in ``new``'s order).
    """
    idx = [torch.zeros(0, dtype=torch.int64)]
    score = [torch.zeros(0)]
    if pooled is not None and rescored is not None:
        keep = rescored >= evict_thresh
        idx.append(pooled[keep].long())
        score.append(rescored[keep].float())
    if new is not None:
        idx.append(new[0].long())
        score.append(new[1].float())
    all_idx, all_score = torch.cat(idx), torch.cat(score)
    order = torch.sort(all_score, descending=True, stable=True).indices
    all_idx, all_score = all_idx[order], all_score[order]
    # A RoI both pooled and found again appears twice with the same latest score: keep one.
    _, first_np = np.unique(all_idx.numpy(), return_index=True)
    first = torch.from_numpy(np.sort(first_np))[:cap]
    return all_idx[first], all_score[first]


class HNMSampler(SamplerBase):
    """``fixed`` with negatives drawn first from the mined false-positive pool."""

    needs_roi_losses = False
    needs_mining = True

    def __init__(
        self,
        fg_fraction: float = 0.25,
        fg_thresh: float = 0.5,
        bg_lo: float = 0.1,
        fp_thresh: float = 0.5,
        pool_per_image: int = 64,
        pool: str = "accumulate",
        evict_thresh: float = 0.3,
    ) -> None:
        """The numbers of ``fixed``, the false-positive score ``fp_thresh``, the per-image cap
        ``pool_per_image``, and the pool rule (see the module docstring)."""
        if pool not in POOL_MODES:
            raise UserError(
                f"sampler.hnm_pool: unknown '{pool}' (choose {' or '.join(POOL_MODES)})"
            )
        self.fg_fraction, self.fg_thresh, self.bg_lo = fg_fraction, fg_thresh, bg_lo
        self.fp_thresh, self.pool_per_image = fp_thresh, pool_per_image
        self.pool_mode, self.evict_thresh = pool, evict_thresh
        self.pool = MinedNegatives()
        # faster-rcnn: per image, pooled boxes (original coordinates) and their latest scores
        self.box_pool: dict[str, tuple[Tensor, Tensor]] = {}

    def pooled_boxes(self, image_id: str) -> Tensor | None:
        """faster-rcnn: the image's pooled false positives, which the step appends to its RoIs
        (``engine.candidates``); None when it has none."""
        pooled = self.box_pool.get(image_id)
        return None if pooled is None else pooled[0]

    def select(
        self, rois: ImageRoIs, roi_losses: RoILosses | None, num: int, gen: torch.Generator
    ) -> Tensor:
        """25% foreground; negatives from the image's pool first, then random background."""
        pooled = self.pool.per_image.get(rois.image_id)
        preferred = None if pooled is None else pooled[0].to(rois.labels.device)
        boxes = self.pooled_boxes(rois.image_id)
        if boxes is not None:  # appended last by the step: the image's final len(boxes) RoIs
            total = len(rois.labels)
            preferred = torch.arange(total - len(boxes), total, device=rois.labels.device)
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

    def mining_request(self) -> MiningRequest:
        """False positives at ``fp_thresh``; in accumulate mode, fresh scores of the pool too."""
        rescore, rescore_boxes = {}, {}
        if self.pool_mode == "accumulate":
            rescore = {k: idx for k, (idx, _) in self.pool.per_image.items()}
            rescore_boxes = {k: boxes for k, (boxes, _) in self.box_pool.items()}
        return MiningRequest(
            self.fp_thresh, self.pool_per_image, rescore, rescore_boxes, self.fg_thresh
        )

    @property
    def pool_size(self) -> int:
        """RoIs in the pool over all images."""
        return self.pool.size + sum(len(boxes) for boxes, _ in self.box_pool.values())

    def after_mining(self, mined: MinedNegatives | None) -> None:
        """Update the pool with a mining pass (see the module docstring)."""
        if mined is None:
            return
        if mined.boxes:
            self._merge_boxes(mined)
            return
        if self.pool_mode == "replace":
            self.pool = MinedNegatives(dict(mined.per_image))
            return
        merged = {}
        # Sorted: the saved pool (and so the checkpoint file) is the same in every process.
        for image_id in sorted(self.pool.per_image.keys() | mined.per_image.keys()):
            pooled = self.pool.per_image.get(image_id)
            rescored = mined.rescored.get(image_id)
            if pooled is not None and rescored is None:
                rescored = pooled[1]  # not scored again: keep the scores it has
            idx, score = merge_pool(
                None if pooled is None else pooled[0],
                rescored,
                mined.per_image.get(image_id),
                min(self.evict_thresh, self.fp_thresh),
                self.pool_per_image,
            )
            if idx.numel():
                merged[image_id] = (idx, score)
        self.pool = MinedNegatives(merged)

    def _merge_boxes(self, mined: MinedNegatives) -> None:
        """faster-rcnn's pool after a pass: as the position pool's, with each image's positions
        in the pass's RoI list (its pooled boxes last, see ``MinedNegatives.boxes``)."""
        merged = {}
        for image_id in sorted(self.box_pool.keys() | mined.boxes.keys()):
            boxes = mined.boxes.get(image_id)
            if boxes is None:  # not mined again: keep what it has
                merged[image_id] = self.box_pool[image_id]
                continue
            pooled = self.box_pool.get(image_id) if self.pool_mode == "accumulate" else None
            rescored = mined.rescored.get(image_id)
            if pooled is not None and rescored is None:
                rescored = pooled[1]  # not scored again: keep the scores it has
            idx, score = merge_pool(
                None if pooled is None else torch.arange(len(boxes) - len(pooled[0]), len(boxes)),
                rescored,
                mined.per_image.get(image_id),
                min(self.evict_thresh, self.fp_thresh),
                self.pool_per_image,
            )
            if idx.numel():
                merged[image_id] = (boxes[idx], score)
        self.box_pool = merged

    def state_dict(self) -> dict[str, Any]:
        """The pool, as plain dicts of tensors (loadable with ``weights_only=True``)."""
        return {
            "pool": {k: {"index": i, "score": s} for k, (i, s) in self.pool.per_image.items()},
            "box_pool": {k: {"boxes": b, "score": s} for k, (b, s) in self.box_pool.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the pool."""
        pool = state.get("pool", {})
        self.pool = MinedNegatives({k: (v["index"], v["score"]) for k, v in pool.items()})
        boxes = state.get("box_pool", {})
        self.box_pool = {k: (v["boxes"], v["score"]) for k, v in boxes.items()}
