"""Everything a run needs before its first step: device, data, proposals, model, optimizer.

Shared by training, evaluation and mining so that each builds these the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ohemcli.config import ExperimentConfig, TrainConfig
from ohemcli.cpus import available_cpus
from ohemcli.data.voc import VOCDataset
from ohemcli.errors import UserError
from ohemcli.model.fast_rcnn import FastRCNN


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device: unknown '{name}' (choose auto, cpu or cuda)")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU. Call before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_workers(requested: int) -> int:
    """DataLoader workers: at most the CPUs this process may run on (PyTorch warns above that)."""
    return max(0, min(requested, available_cpus()))


def data_root(data: str) -> Path:
    """``synth`` -> the built-in synthetic set (generated on first use); otherwise a VOC root."""
    from ohemcli.data.synthetic import resolve_data_root

    return resolve_data_root(data)


def data_name(data: str) -> str:
    """A short name for run folders: ``synth`` or the root folder's name."""
    return "synth" if data == "synth" else Path(data).resolve().name


@dataclass
class SplitData:
    """One split of the data set with its proposals."""

    dataset: VOCDataset
    proposals: dict[str, np.ndarray]


def load_split(cfg: ExperimentConfig, split: str, show_progress: bool = True) -> SplitData:
    """The split's images, annotations and (cached) proposals."""
    from ohemcli.data.proposals import load_proposals, resolve_source

    d = cfg.data
    root = data_root(d.data)
    limit = d.train_images if split == d.train_split else 0
    dataset = VOCDataset(root, split, d.classes, limit=limit, limit_option="data.train_images")
    proposals = load_proposals(
        dataset,
        source=resolve_source(d.proposals, root, split),  # "release", {split} placeholders
        max_boxes=d.max_proposals,
        workers=None,
        show_progress=show_progress,
        max_side=d.ss_max_side,
    )
    return SplitData(dataset, proposals)


def prepare_data(cfg: ExperimentConfig, show_progress: bool = True) -> None:
    """Make the data both splits need (the synthetic set, proposals) and leave it in the cache.

    Jobs launched side by side on a fresh cache would otherwise each generate the synthetic set
    and run selective search on the same images at once, competing for the same cores.
    """
    for split in dict.fromkeys((cfg.data.train_split, cfg.data.test_split)):
        load_split(cfg, split, show_progress)


def build_model(cfg: ExperimentConfig, num_classes: int, device: torch.device) -> FastRCNN:
    """Fast R-CNN with initial weights that depend only on the seed (the same for every sampler)."""
    torch.manual_seed(cfg.train.seed)
    return FastRCNN(cfg.model, num_classes).to(device)


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
