"""``ohem compare``'s launcher options: where and how many runs at once (not config keys).

Together they build a :class:`ohemcli.launch.submit.Launch`.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

LAUNCHER = "Launcher"  # the help panel


class Launcher(str, Enum):
    local = "local"
    slurm = "slurm"


LauncherOpt = Annotated[
    Launcher,
    typer.Option(
        "--launcher",
        show_default=False,
        help="local (default) or slurm, via submitit.",
        rich_help_panel=LAUNCHER,
    ),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Runs at once (CPU: 1; CUDA: GPUs / G).",
        rich_help_panel=LAUNCHER,
    ),
]
GpusPerRunOpt = Annotated[
    int,
    typer.Option(
        "--gpus-per-run",
        min=1,
        help="GPUs per run (DDP).",
        rich_help_panel=LAUNCHER,
    ),
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="No: submit, return.",
        rich_help_panel=LAUNCHER,
    ),
]
SlurmPartitionOpt = Annotated[
    str | None,
    typer.Option("--slurm-partition", help="Slurm partition.", rich_help_panel=LAUNCHER),
]
SlurmTimeOpt = Annotated[
    int,
    typer.Option(
        "--slurm-time",
        min=1,
        metavar="MIN",
        show_default=False,
        help="Minutes per Slurm job (default 1440).",
        rich_help_panel=LAUNCHER,
    ),
]
SlurmAccountOpt = Annotated[
    str | None,
    typer.Option("--slurm-account", help="Slurm account.", rich_help_panel=LAUNCHER),
]
SlurmConstraintOpt = Annotated[
    str | None,
    typer.Option(
        "--slurm-constraint",
        help="Slurm node feature, e.g. a100.",
        rich_help_panel=LAUNCHER,
    ),
]
SlurmMemOpt = Annotated[
    str | None,
    typer.Option("--slurm-mem", help="Slurm memory per node, e.g. 64G.", rich_help_panel=LAUNCHER),
]
