"""Finished run folders -> analysis, pandas tables and matplotlib plots (it never trains)."""

from ohemcli.report.analysis import Analysis, analyse
from ohemcli.report.render import write_analysis, write_report
from ohemcli.report.tables import load_runs, read_runs, summary_table

__all__ = [
    "Analysis",
    "analyse",
    "load_runs",
    "read_runs",
    "summary_table",
    "write_analysis",
    "write_report",
]
