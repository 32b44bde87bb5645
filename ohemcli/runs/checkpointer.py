"""Checkpoints: saved atomically, loaded with ``weights_only=True`` so a file can never run code."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ohemcli.errors import UserError
from ohemcli.fileio import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, dicts, lists, numbers, strings only) atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        # The safe unpickler warns about foreign globals before it refuses them; the refusal
        # below is the one line the user sees.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file is the user's to fix
        # PyTorch's text suggests weights_only=False, i.e. running the file's code: never relay it.
        raise UserError(
            f"{path}: not a checkpoint that loads safely (only tensors and plain containers "
            f"are allowed; {type(exc).__name__})"
        ) from None


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and, when present, every CUDA device)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
