"""Finished run folders -> pandas tables, statistics and matplotlib plots (it never trains)."""

from ohemcli.report.compare import write_report
from ohemcli.report.tables import load_runs, summary_table, verdict_text

__all__ = ["load_runs", "summary_table", "verdict_text", "write_report"]
