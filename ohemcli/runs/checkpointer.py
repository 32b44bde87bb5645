"""A run's ``checkpoint.pt``: what it holds, how it is written, read back and recognised.

Every key of the checkpoint is spelled in this module. Files are written atomically and loaded
with ``weights_only=True``, so a checkpoint can never run code.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from ohemcli.config import ExperimentConfig, config_to_dict
from ohemcli.errors import UserError
from ohemcli.fileio import atomic_write
from ohemcli.model.safe_load import load_safely
from ohemcli.samplers.base import RoISampler

# Keys every checkpoint of ours has; a .pt without them is someone else's file.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "sampler", "state", "config")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, dicts, lists, numbers, strings only) atomically.

    A write that fails (a full disk) is an ``OSError`` naming ``path``, which the CLI prints in
    one line; the previous checkpoint stays as it was.
    """

    def write(tmp: Path) -> None:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # torch's writer reports a failed write as RuntimeError
            said = " ".join(str(exc).split())[:200]
            raise OSError(
                errno.EIO, f"checkpoint not written ({said}); the previous one is intact", str(path)
            ) from None

    atomic_write(path, write)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    return load_safely(path, "checkpoint")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``path`` and refuse, in one line, a file that is not a checkpoint of ohem."""
    ckpt = load_checkpoint(path)
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f"{path}: not a checkpoint of ohem (no '{missing[0]}' key)")
    if not isinstance(ckpt["config"], dict):
        raise UserError(f"{path}: not a checkpoint of ohem (bad 'config')")
    return ckpt


def saved_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The run's config as saved in a checkpoint read by :func:`read_checkpoint`."""
    return ckpt["config"]


def saved_weights(ckpt: dict[str, Any]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """The model's weights and the class names they were trained on."""
    return ckpt["model"], tuple(ckpt["classes"])


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The global torch RNG states: the CPU's and, on a CUDA ``device``, that device's only.

    One device, not every visible one: a checkpoint of an 8-GPU host resumed where fewer GPUs
    are visible (a compare job's ``CUDA_VISIBLE_DEVICES``, a 1-GPU Slurm job) must still load.
    """
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned; on a CUDA ``device``, its saved state.

    A checkpoint written before issue 35 holds a list, one state per GPU then visible: this
    device's entry is restored when the list has one, and the rest are left alone.
    """
    torch.set_rng_state(state["cpu"])
    saved = state.get("cuda")
    if saved is None or device is None or device.type != "cuda":
        return
    if isinstance(saved, (list, tuple)):
        index = device.index or 0
        if index >= len(saved):
            return
        saved = saved[index]
    torch.cuda.set_rng_state(saved, device)


class Checkpointer:
    """Saves a run's objects to ``path`` and restores them from a checkpoint of the same run.

    The checkpoint holds the model, optimizer, LR scheduler and sampler state, the sampler's
    generator, the global RNG states, the training loop's running totals (``state``, a plain
    dict), the config with its class list, and the AMP grad scaler when the run has one.

    Under torchrun every rank draws its own RoIs and dropout masks: ``save`` takes every rank's
    generator and RNG states (``rank_rngs``, gathered to rank 0) and ``restore`` gives each rank
    its own back (``rng_restored`` says whether the checkpoint had this rank's).
    """

    def __init__(
        self,
        path: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        sampler: RoISampler,
        generator: torch.Generator,
        scaler: torch.amp.GradScaler | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.path = Path(path)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.sampler = sampler
        self.generator = generator
        self.scaler = scaler
        self.device = device  # whose CUDA RNG state is saved (None: the CPU's only)
        self.rng_restored = False

    def rank_rng(self) -> dict[str, Any]:
        """This process's generator and global RNG states, for :meth:`save`'s ``rank_rngs``."""
        return {"sampler_generator": self.generator.get_state(), "rng": rng_state(self.device)}

    def save(
        self,
        state: dict[str, Any],
        cfg: ExperimentConfig,
        rank_rngs: list[dict[str, Any]] | None = None,
    ) -> None:
        """Write the objects' states, the loop's ``state`` as given, ``cfg`` and its classes;
        ``rank_rngs``: every rank's :meth:`rank_rng`, in rank order (torchrun)."""
        ckpt = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "sampler_generator": self.generator.get_state(),
            "rng": rng_state(self.device),
            "state": state,
            "config": config_to_dict(cfg),
            "classes": list(cfg.data.classes or ()),
        }
        if self.scaler is not None:
            ckpt["scaler"] = self.scaler.state_dict()
        if rank_rngs is not None and len(rank_rngs) > 1:
            ckpt["rng_ranks"] = rank_rngs
        save_checkpoint(self.path, ckpt)

    def restore(self, ckpt: dict[str, Any], rank: int = 0) -> dict[str, Any]:
        """Load ``ckpt`` (from :func:`read_checkpoint`) into the objects; return its ``state``.

        Rank ``rank`` gets its own RNG states back; a rank the checkpoint has none for (it was
        written by fewer ranks) keeps the states it has (``rng_restored`` is then False).

        An optimizer state whose parameter groups differ from this run's (the groups follow
        ``train.bias_lr_factor``, ``train.bias_weight_decay`` and ``train.bias_decay_scope``) is
        refused in one line.
        """
        self.model.load_state_dict(ckpt["model"])
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError:  # torch refuses a state with another number or size of groups
            raise UserError(
                f"{self.path}: its optimizer state has other parameter groups than "
                "train.bias_weight_decay / train.bias_decay_scope give; choose another --out"
            ) from None
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self._restore_rng(ckpt, rank)
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        return ckpt["state"]

    def _restore_rng(self, ckpt: dict[str, Any], rank: int) -> None:
        """This rank's generator and global RNG states from ``ckpt`` (see :meth:`restore`)."""
        ranks = ckpt.get("rng_ranks") or []
        if rank < len(ranks):
            mine = ranks[rank]
        elif rank == 0:
            mine = {"sampler_generator": ckpt["sampler_generator"], "rng": ckpt["rng"]}
        else:
            self.rng_restored = False
            return
        self.generator.set_state(mine["sampler_generator"])
        set_rng_state(mine["rng"], self.device)
        self.rng_restored = True
