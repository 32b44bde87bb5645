"""``ohem report``: re-render the tables of finished runs, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ohemcli.cli.app import app
from ohemcli.cli.option_types import BaselineOpt, BootstrapOpt, PairMode, PairsOpt, TargetMapOpt
from ohemcli.cli.printing import Format, print_results


@app.command("report")
def report_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Compare folders and/or run folders.", show_default=False)
    ],
    fmt: Annotated[
        Format, typer.Option("--format", help="What to print on stdout.")
    ] = Format.table,
    runs: Annotated[bool, typer.Option("--runs", help="One row per run (md, csv).")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.md, CSVs, plots (default: a lone compare folder).",
        ),
    ] = None,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw plots with the files.")
    ] = True,
    bootstrap: BootstrapOpt = 1000,
    target_map: TargetMapOpt = None,
    baseline: BaselineOpt = "fixed",
    pairs: PairsOpt = PairMode.baseline,
) -> None:
    """Re-render the tables of finished runs, without training.

    Given one compare folder, it also rewrites that folder's results.csv, summary.csv, report.md
    and plots/. Given run folders or several compare folders, it prints only, unless --out names
    a folder for the files.

    Examples:

      ohem report runs/compare-synth

      ohem report runs/compare-synth --format md

      ohem report runs/cmp-a runs/cmp-b --format csv --runs

      ohem report runs/synth-fixed-s1 runs/synth-ohem-s1 --out runs/adhoc
    """
    from ohemcli import api
    from ohemcli.progress import err_console

    a = api.report(paths, out, bootstrap, target_map, baseline, pairs == PairMode.all, plots)
    target = api.report_folder(paths, out)
    print_results(a, fmt, runs)
    if target is not None:
        err_console.print(
            f"wrote {target}/report.md, report.html, summary.csv, pairs.csv, results.csv"
            + (", plots/" if plots else "")
        )
