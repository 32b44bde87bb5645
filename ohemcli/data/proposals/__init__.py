"""Region proposals: selective search, the Fast R-CNN release's ``.mat`` files and their
loading (``load``), and the per-image cache of searched boxes (``cache``)."""

from ohemcli.data.proposals.load import (
    SELECTIVE_SEARCH,
    load_proposals,
    mean_boxes_per_image,
    proposal_recall,
)

__all__ = ["SELECTIVE_SEARCH", "load_proposals", "mean_boxes_per_image", "proposal_recall"]
