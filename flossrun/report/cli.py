"""``flossrun-report PATH... [--out DIR] [--no-plots]``: tables and figures from finished runs
(docs/design.md §7 "The report"), written atomically into ``--out``, and a printed summary.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flossrun.contract import CONFIG_FILE, CONFLICT_FILE
from flossrun.io import write_text
from flossrun.report.collect import collect
from flossrun.report.conditions import condition_table
from flossrun.report.figures import render_figures
from flossrun.report.rundir import STATUSES
from flossrun.report.stats import format_rate

TABLES = ("results", "conditions", "curves")  # <name>.csv in --out


def report(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Collect every run below ``paths``, write the tables (and figures) into ``out``; never
    raises on bad run files. Returns ``out``, ``collection``, the ``TABLES`` and ``problems``
    (runs not finished or refused) as frames, ``counts`` per status, ``figures``, ``notes``."""
    paths = [Path(p) for p in paths]
    if out is None:  # the single PATH itself, or outputs/report when several are given
        out = paths[0] if len(paths) == 1 else Path("outputs") / "report"
    out = Path(out)
    missing = [f"path not found: {p}" for p in paths if not p.exists()]
    collection = collect([p for p in paths if p.exists()])
    notes = collection.notes + missing
    conditions = condition_table(collection.results)
    figures: list[Path] = []
    tables = dict(zip(TABLES, (collection.results, conditions, collection.curves), strict=True))
    if collection.runs.empty:  # nothing to report: leave ``out`` alone
        notes.append(f"no run directory (with {CONFIG_FILE}) below {' '.join(map(str, paths))}")
    else:
        for name, table in tables.items():
            write_text(out / f"{name}.csv", table.to_csv(index=False))  # makes ``out``
        if plots:
            figures, figure_notes = render_figures(collection, out / "figures")
            notes += figure_notes
    runs = collection.runs
    counts = {s: int((runs["status"] == s).sum()) for s in STATUSES}
    counts["conflict"] = int((runs["conflict"] != "").sum())
    problems = runs.loc[runs["status"] != "finished", ["run", "status", "reason", "code"]]
    conflicts = runs.loc[runs["conflict"] != "", ["run", "conflict", "code"]]
    conflicts = conflicts.rename(columns={"conflict": "reason"}).assign(status="conflict")
    problems = pd.concat([problems, conflicts[problems.columns]], ignore_index=True)
    return {
        "out": out,
        "collection": collection,
        **tables,
        "problems": problems.reset_index(drop=True),
        "counts": counts,
        "figures": figures,
        "notes": notes,
    }


def condition_text(rows: pd.DataFrame) -> str:
    """One experiment's conditions as a text table: n, successes (95 % CI), medians, code
    ("-" for what a condition that trained nothing lacks)."""
    # a task without an accuracy (the sine generator) shows its test loss instead
    score, name = ("test_accuracy", "median_acc")
    if rows[f"{score}_median"].isna().all():
        score, name = ("test_loss", "median_loss")

    def spread(col: str) -> list[str]:
        cols = [rows[f"{col}_{q}"] for q in ("median", "q25", "q75")]
        return [f"{m:.3g} [{lo:.3g}, {hi:.3g}]" for m, lo, hi in zip(*cols, strict=True)]

    def if_trained(cells) -> list[str]:
        return [c if t else "-" for c, t in zip(cells, rows["trained"], strict=True)]

    rates = map(format_rate, rows["successes"], rows["n"])
    epochs = ["-" if pd.isna(v) else f"{v:.0f}" for v in rows["epochs_to_success_median"]]
    shown = pd.DataFrame(
        {
            "n": rows["n"],
            "success (95% CI)": if_trained(rates),
            f"{name} [25-75%]": if_trained(spread(score)),
            "median_epochs": if_trained(epochs),
            "λ1 [25-75%]": spread("lambda_1"),
            "code": rows["code_versions"],
        }
    )
    shown.index = rows["condition"].to_numpy()
    return shown.to_string()


def format_report(result: dict[str, Any]) -> str:
    """The short text summary the CLI prints: counts, per-condition table, problem runs."""
    counts = result["counts"]
    statuses = {s: n for s, n in counts.items() if s != "conflict"}
    lines = [
        f"{sum(statuses.values())} run(s): " + ", ".join(f"{n} {s}" for s, n in statuses.items())
    ]
    if counts.get("conflict"):
        lines[0] += f"; {counts['conflict']} refused by a later job ({CONFLICT_FILE})"
    for experiment, rows in result["conditions"].groupby("experiment", sort=False):
        lines += ["", f"[{experiment}]", condition_text(rows)]
    if len(result["problems"]):
        lines += ["", "not finished or refused:"]
        for row in result["problems"].itertuples(index=False):
            lines.append(f"  {row.status:<10} {row.run}  [{row.code}]  {row.reason}")
    out = result["out"]
    if len(result["results"]):
        tables = ", ".join(str(out / f"{n}.csv") for n in TABLES)
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
