"""Data: VOC-format roots, the synthetic set, proposals and mini-batch building."""
