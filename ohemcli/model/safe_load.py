"""``torch.load`` of a user's file with ``weights_only=True``, its failures as one line each."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ohemcli.errors import UserError

# The start of PyTorch's message when the safe unpickler refuses a global (a class, a function).
_REFUSED = "Weights only load failed"


def load_safely(path: Path, what: str) -> Any:
    """The content of a ``.pt`` file on the CPU; ``what`` names the file in errors.

    Only tensors and plain containers load: a file that holds anything else is refused (loading
    it could run code), and a truncated or corrupt file is called that. PyTorch's own text
    suggests ``weights_only=False``, i.e. running the file's code, so it is never relayed.
    """
    try:
        # The safe unpickler warns about foreign globals before it refuses them; the refusal
        # below is the one line the user sees.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file is the user's to fix
        if _REFUSED in str(exc):
            raise UserError(
                f"{path}: refused, this {what} holds objects other than tensors and plain "
                "containers (loading it could run code)"
            ) from None
        raise UserError(
            f"{path}: this {what} is truncated or corrupt ({type(exc).__name__}); it does not load"
        ) from None
