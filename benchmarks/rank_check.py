"""How much ranking in another precision changes the RoIs a sampler chooses (the
``sampler.rank_dtype`` figures; ``benchmarks/rank_dtype.py`` runs it over a training run)."""

from __future__ import annotations

import torch
from torch import Tensor

from ohemcli.data.batching import Batch
from ohemcli.engine.candidates import batch_image_rois
from ohemcli.engine.step import choose_rois
from ohemcli.model.fast_rcnn import FastRCNN
from ohemcli.samplers.base import RoISampler


def jaccard(a: Tensor, b: Tensor) -> float:
    """|A ∩ B| / |A ∪ B| of two sets of RoI positions (1.0 when both are empty)."""
    first, second = set(a.tolist()), set(b.tolist())
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def mean_jaccard(a: list[Tensor], b: list[Tensor]) -> float:
    """The mean over images of :func:`jaccard` of their two choices."""
    return sum(jaccard(x, y) for x, y in zip(a, b, strict=True)) / max(1, len(a))


def choice_in(
    model: FastRCNN,
    sampler: RoISampler,
    batch: Batch,
    per_image: int,
    gen: torch.Generator,
    rank_dtype: str,
) -> list[Tensor]:
    """The RoIs ``sampler`` would choose on ``batch`` at the model's weights, ranked in
    ``rank_dtype``; the global RNG (dropout's) and ``gen`` are put back as they were, so that
    a training step after it draws what it would have drawn."""
    global_state, gen_state = torch.get_rng_state(), gen.get_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with torch.no_grad():
            features = model.features(batch.images)
            chosen = choose_rois(
                model, sampler, features, batch_image_rois(batch), per_image, gen, rank_dtype
            )
    finally:
        torch.set_rng_state(global_state)
        gen.set_state(gen_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
    return chosen.indices
