"""The ``ohem`` command line: a thin typer layer over the library.

Each command module registers its commands on ``app`` when imported; ``ohem --help`` lists them
in the order of these imports.
"""

from __future__ import annotations

from ohemcli.cli.app import app

# isort: off
from ohemcli.cli import data, train, eval, compare, report, bench, config  # noqa: F401
# isort: on


def main() -> None:
    """Console-script entry point of ``ohem``."""
    app()
