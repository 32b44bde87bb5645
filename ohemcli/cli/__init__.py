"""The ``ohem`` command line: a thin typer layer over the library.

Each command module registers its commands on ``app`` when imported.
"""

from __future__ import annotations

import importlib

from ohemcli.cli.app import app

COMMAND_MODULES = ("data", "train", "eval", "compare", "bench")


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"ohemcli.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"ohemcli.cli.{name}":
                raise


_register()


def main() -> None:
    """Console-script entry point of ``ohem``."""
    app()
