"""``flossrun-report PATH... [--out DIR] [--no-plots]``: tables and figures from finished runs.

Writes into ``--out`` (default: the single PATH, or ``outputs/report`` for several):

- ``results.csv`` — one row per realization of every run found, failed/unfinished/corrupt runs
  included with their ``status`` and ``reason``;
- ``conditions.csv`` — per experiment and condition: runs, n, success rate, medians;
- ``curves.csv`` — every ``metrics.csv`` row with its run and condition;
- ``figures/`` — the preset figures (PNG and PDF).

Every file is written to a temporary name and moved into place, so reruns overwrite safely.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flossrun.report.collect import collect
from flossrun.report.conditions import condition_table
from flossrun.report.render import render_figures
from flossrun.report.rundir import STATUSES


def default_out(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The single PATH itself, or ``outputs/report`` when several are given."""
    return Path(paths[0]) if len(paths) == 1 else Path("outputs") / "report"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def report(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Collect every run below ``paths``, write the tables (and figures) into ``out``.

    Returns a dict: ``out`` (Path), ``collection`` (:class:`Collection`), ``results``,
    ``conditions``, ``curves`` and ``problems`` (non-finished runs: run, status, reason) as
    DataFrames, ``counts`` (runs per status), ``figures`` (files written) and ``notes``
    (missing paths, skipped or failed figures). Never raises on bad run files.
    """
    paths = [Path(p) for p in paths]
    out = default_out(paths) if out is None else Path(out)
    notes = [f"path not found: {p}" for p in paths if not p.exists()]
    collection = collect([p for p in paths if p.exists()])
    conditions = condition_table(collection.results, collection.order)
    figures: list[Path] = []
    if collection.runs.empty:  # nothing to report: leave ``out`` alone
        notes.append(
            f"no run directory (with .hydra/config.yaml) below {' '.join(map(str, paths))}"
        )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(collection.results, out / "results.csv")
        write_csv(conditions, out / "conditions.csv")
        write_csv(collection.curves, out / "curves.csv")
    if plots and not collection.runs.empty:
        figures, figure_notes = render_figures(collection, out / "figures")
        notes += figure_notes
    runs = collection.runs
    counts = {s: int((runs["status"] == s).sum()) for s in STATUSES}
    problems = runs.loc[runs["status"] != "finished", ["run", "status", "reason"]]
    return {
        "out": out,
        "collection": collection,
        "results": collection.results,
        "conditions": conditions,
        "curves": collection.curves,
        "problems": problems.reset_index(drop=True),
        "counts": counts,
        "figures": figures,
        "notes": notes,
    }


def format_report(result: dict[str, Any]) -> str:
    """The short text summary the CLI prints: counts, per-condition table, problem runs."""
    counts = result["counts"]
    lines = [f"{sum(counts.values())} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    table = result["conditions"].rename(
        columns={
            "success_rate": "success",
            "median_test_accuracy": "median_acc",
            "median_epochs_to_success": "median_epochs",
        }
    )
    for experiment, rows in table.groupby("experiment", sort=False):
        shown = rows.drop(columns=["experiment"]).set_index("condition")
        lines += ["", f"[{experiment}]", shown.to_string(float_format=lambda v: f"{v:.3g}")]
    if len(result["problems"]):
        lines += ["", "not finished:"]
        for row in result["problems"].itertuples(index=False):
            lines.append(f"  {row.status:<10} {row.run}  {row.reason}")
    out = result["out"]
    if len(result["results"]):
        tables = ", ".join(str(out / n) for n in ("results.csv", "conditions.csv", "curves.csv"))
        lines += ["", f"tables: {tables}"]
    if result["figures"]:
        lines.append(f"figures: {len(result['figures'])} file(s) in {out / 'figures'}")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flossrun-report``; returns the exit code (1 if no run was found)."""
    parser = argparse.ArgumentParser(
        prog="flossrun-report",
        description="Aggregate flossrun run directories (single runs or multiruns, any depth) "
        "into results.csv, conditions.csv, curves.csv and the preset figures.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run or sweep directories")
    parser.add_argument("--out", help="output folder (default: PATH, or outputs/report)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        parser.error(f"no such path: {', '.join(missing)}")
    result = report(args.paths, out=args.out, plots=not args.no_plots)
    if hasattr(sys.stdout, "reconfigure"):  # never die on a terminal that cannot print λ or …
        sys.stdout.reconfigure(errors="replace")
    print(format_report(result))
    return 0 if len(result["collection"].runs) else 1


if __name__ == "__main__":
    sys.exit(main())
