"""Aggregate flossrun runs into tables and figures (``flossrun-report``, docs/design.md §7–8).

:func:`report` is the entry point of the CLI and of the Hydra callback
:class:`~flossrun.report.callback.ReportCallback`; :func:`collect` reads run directories into
tidy frames; :mod:`flossrun.report.figures` holds one function per preset figure.
"""

from flossrun.report.cli import report
from flossrun.report.collect import Collection, collect
from flossrun.report.conditions import condition_table
from flossrun.report.figures import FIGURES, render_figures
from flossrun.report.rundir import find_run_dirs, load_run

__all__ = [
    "FIGURES", "Collection", "collect", "condition_table", "find_run_dirs", "load_run",
    "render_figures", "report",
]  # fmt: skip
