"""Fast R-CNN: backbones, the RoI head, box coding and the one per-RoI loss."""
