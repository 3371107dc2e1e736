"""The comparison report of a sweep: rows from each job's files, aggregates over seeds, a generated reading,
plots and one HTML page. `build_report(folder).write()` writes it; a Hydra callback does so after every multirun."""

from ftcompare.report.callback import ReportOnMultirunEnd
from ftcompare.report.page import Report, build_report
from ftcompare.report.records import collect_runs, newest_sweep

__all__ = ["Report", "ReportOnMultirunEnd", "build_report", "collect_runs", "newest_sweep"]
