"""The optimizer of a run: SGD over two parameter groups (weights, biases) and its LR schedule."""

from __future__ import annotations

from typing import Any

import torch

from ohemcli.config import TrainConfig


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Two SGD groups of the trainable parameters: weights, then biases (names ending in ``bias``).

    Biases get ``bias_lr_factor`` x lr and ``bias_weight_decay`` (None: ``weight_decay``), as the
    ``lr_mult: 2, decay_mult: 0`` of every layer in Fast R-CNN's Caffe prototxt.
    """
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.rsplit(".", 1)[-1] == "bias" else weights).append(p)
    decay = cfg.weight_decay if cfg.bias_weight_decay is None else cfg.bias_weight_decay
    return [
        {"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": biases, "lr": cfg.lr * cfg.bias_lr_factor, "weight_decay": decay},
    ]


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
