"""Compare samplers: orchestration (``compare``), analysis, pandas tables and matplotlib plots."""

from ohemcli.report.analysis import Analysis, analyse
from ohemcli.report.compare import compare
from ohemcli.report.render import write_analysis, write_report
from ohemcli.report.tables import load_runs, read_runs, summary_table

__all__ = [
    "Analysis",
    "analyse",
    "compare",
    "load_runs",
    "read_runs",
    "summary_table",
    "write_analysis",
    "write_report",
]
