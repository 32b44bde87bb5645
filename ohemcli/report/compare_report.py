"""A compare folder's report: the baseline check before training, and the analysis after it.

The command line and :func:`ohemcli.api.compare` both use these, so a Python caller gets the
report files that ``ohem compare`` writes. Training itself is ``launch/``'s; this module reads
finished run folders only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ohemcli.report.analysis import Analysis, analyse_folders
from ohemcli.report.pairs import sampler_pairs
from ohemcli.report.render import write_analysis
from ohemcli.runs.paths import ComparePaths
from ohemcli.runs.settings import read_settings


def check_baseline(baseline: str, all_pairs: bool, samplers: Sequence[str], out_dir: Path) -> None:
    """Refuse, before any training, a baseline that the report could not pair with: more than
    three samplers (with the folder's earlier ones) and the baseline not among them."""
    settings = ComparePaths(Path(out_dir)).settings
    earlier = read_settings(settings).get("samplers") or [] if settings.is_file() else []
    sampler_pairs([*earlier, *samplers], baseline, all_pairs)  # one line when it cannot


@dataclass
class CompareReport:
    """What a compare folder's report holds: the analysis of its finished runs (None when none
    finished), the files written, and the runs that failed or are still under way."""

    out_dir: Path
    analysis: Analysis | None
    files: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "<run> (<state>): <last line of its log>"
    pending: list[str] = field(default_factory=list)  # names of runs still under way


def report_compare(
    out_dir: Path,
    finished: Sequence[Path] = (),
    failed: Sequence[str] = (),
    pending: Sequence[str] = (),
    bootstrap: int = 1000,
    target_map: float | None = None,
    baseline: str = "fixed",
    all_pairs: bool = False,
) -> CompareReport:
    """Analyse every finished run of ``out_dir`` (the ones ``finished`` names and those already
    there: a compare that grew by samplers or seeds reports the earlier runs too) and write
    report.md, the CSVs and plots/ into it."""
    out_dir = Path(out_dir)
    runs = sorted(set(map(Path, finished)) | set(ComparePaths(out_dir).finished_runs()))
    report = CompareReport(out_dir, None, failed=list(failed), pending=list(pending))
    if runs:
        report.analysis = analyse_folders(runs, bootstrap, target_map, baseline, all_pairs)
        report.analysis.failed = list(failed)
        report.files = write_analysis(out_dir, report.analysis)
    return report
