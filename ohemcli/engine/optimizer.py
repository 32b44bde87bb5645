"""The optimizer of a run: SGD over parameter groups (weights, biases) and its LR schedule."""

from __future__ import annotations

from typing import Any

import torch

from ohemcli.config import TrainConfig


def _fc_biases(model: torch.nn.Module) -> set[int]:
    """The ids of the biases of the model's fully connected layers (``nn.Linear``)."""
    return {
        id(m.bias) for m in model.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None
    }


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """SGD groups of the trainable parameters: weights, then biases (names ending in ``bias``).

    Every bias gets ``bias_lr_factor`` x lr. ``bias_weight_decay`` (None: ``weight_decay``) goes
    to the biases that ``bias_decay_scope`` names:

    - ``"all"``: two groups, weights and biases;
    - ``"fc"``: three groups, weights, the fc layers' biases (``nn.Linear``: fc6, fc7, cls_score,
      bbox_pred) with ``bias_weight_decay``, and the other biases (conv, norm) with
      ``weight_decay``. That is the OHEM release's rule: in abhi2610/ohem
      ``models/pascal_voc/VGG16/fast_rcnn_ohem/train.prototxt`` every trainable bias has
      ``lr_mult: 2``, but only fc6, fc7, cls_score and bbox_pred set ``decay_mult: 0``; conv3_1 to
      conv5_3 give their bias ``lr_mult: 2`` alone, so Caffe's default ``decay_mult: 1`` holds.
    """
    fc = _fc_biases(model)
    weights, fc_biases, other_biases = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.rsplit(".", 1)[-1] != "bias":
            weights.append(p)
        elif cfg.bias_decay_scope == "all" or id(p) in fc:
            fc_biases.append(p)
        else:
            other_biases.append(p)
    decay = cfg.weight_decay if cfg.bias_weight_decay is None else cfg.bias_weight_decay
    bias_lr = cfg.lr * cfg.bias_lr_factor
    groups = [
        {"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": fc_biases, "lr": bias_lr, "weight_decay": decay},
    ]
    if cfg.bias_decay_scope == "fc":  # "all" keeps two groups: checkpoints of older runs load
        groups.append({"params": other_biases, "lr": bias_lr, "weight_decay": cfg.weight_decay})
    return groups


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with momentum and weight decay; a step schedule with an optional linear warm-up.

    The schedule multiplies each group's own initial lr, so biases keep their factor.
    """
    optimizer = torch.optim.SGD(
        param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )

    def factor(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
        drops = sum(1 for step in cfg.lr_steps if it >= step)
        return warm * cfg.lr_gamma**drops

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
