"""A worked example of a user's own RoI sampler for ohemcli (docs/plugins.md).

``HardAfterWarmup`` draws like Fast R-CNN (25% foreground at random) for its first ``warmup``
images, then takes the negatives of highest loss from the read-only pass, each weighted by
``neg_weight``. It keeps a counter, so it also shows ``state_dict`` (resume).

Run it with the directory on the import path:

    PYTHONPATH=experiments/plugins \
        ohem compare --samplers fixed,ohem,hard_after_warmup:HardAfterWarmup
"""

from __future__ import annotations

import torch

from ohemcli.samplers.base import Selection


class HardAfterWarmup:
    needs_roi_losses = True  # the trainer runs the read-only pass and passes roi_losses
    needs_mining = False

    def __init__(self, config=None, warmup: int = 8, neg_weight: float = 1.0) -> None:
        # ``config`` is the run's SamplerConfig: its numbers (fg_fraction, fg_thresh) apply.
        self.fg_fraction = 0.25 if config is None else config.fg_fraction
        self.warmup, self.neg_weight, self.seen = warmup, neg_weight, 0

    def select(self, rois, roi_losses, num, gen):
        self.seen += 1
        fg = torch.nonzero(rois.labels > 0).flatten()
        bg = torch.nonzero(rois.labels == 0).flatten()
        fg = fg[torch.randperm(len(fg), generator=gen)[: int(num * self.fg_fraction)]]
        need = num - len(fg)
        if self.seen <= self.warmup:  # warm-up: random negatives
            bg = bg[torch.randperm(len(bg), generator=gen)[:need]]
        else:  # the negatives of highest classification loss
            bg = bg[torch.argsort(roi_losses.cls[bg], descending=True, stable=True)[:need]]
        weights = torch.cat([torch.ones(len(fg)), torch.full((len(bg),), self.neg_weight)])
        return Selection(torch.cat([fg, bg]), cls_weight=weights, loss="ce")

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]
