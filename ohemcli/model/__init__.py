"""Fast R-CNN: backbones, the RoI head and the one per-RoI loss (box coding: ``ohemcli.boxes``)."""
