"""Compare samplers: orchestration (``compare``), pandas tables and matplotlib plots."""

from ohemcli.report.compare import compare
from ohemcli.report.render import write_report
from ohemcli.report.tables import load_runs, summary_table, verdict_text

__all__ = ["compare", "load_runs", "summary_table", "verdict_text", "write_report"]
