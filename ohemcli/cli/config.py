"""``ohem config keys``: every config key that ``--set`` takes, with its type, range and default."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ohemcli.cli.app import app

config_app = typer.Typer(
    help="The config keys that --set and YAML files take.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


@config_app.command("keys")
def keys_command(
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON list of {key, type, allowed, default}.")
    ] = False,
) -> None:
    """List every config key with its type, allowed values and default.

    Any of them can be set with --set KEY=VALUE on train, compare and bench (the value is YAML:
    true, 0.5, [1, 2], null), or in a YAML file given to --config, as section: {key: value}.

    Examples:

      ohem config keys

      ohem train --data synth --sampler ohem --set sampler.ohem_nms_iou=0.5
    """
    from ohemcli.config.keys import config_keys
    from ohemcli.progress import out_console

    keys = config_keys()
    if json_out:
        print(json.dumps([k.as_dict() for k in keys]))
        return
    table = Table(title="Config keys (--set KEY=VALUE)", title_justify="left")
    for column in ("key", "type", "allowed", "default"):  # the range wraps, the rest stays whole
        table.add_column(column, overflow="fold", no_wrap=column != "allowed")
    for k in keys:
        default = k.as_dict()["default"]
        table.add_row(k.key, k.type, k.allowed, "null" if default is None else str(default))
    out_console.print(table)
