"""``index.md`` of ``make figures``: every success comparison, then every rank test, in one
table each (also as CSV, :func:`write_tables`), then per preset its claim, setting, measured
numbers, code versions, notes and figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from flossrun.io import write_text
from flossrun.report.claims import (
    comparison_markdown,
    comparisons,
    rank_comparisons,
    rank_markdown,
    summarize,
)
from flossrun.report.collect import Collection
from flossrun.report.conditions import format_value, sort_key
from flossrun.report.presets import Claim
from flossrun.report.stats import counted

SETTING = {
    "task.name": "task", "model.name": "model", "task.channels": "channels S", "model.N": "N",
    "task.T": "T", "train.epochs": "epochs", "floss.pre_epochs": "pre-flossing epochs",
    "floss.k": "k", "realizations": "realizations per run",
}  # fmt: skip

HEADER = [
    "Success rates count each network (config and seed) once per preset, over finished runs, "
    "with 95 % Wilson intervals; each comparison is Fisher's exact test (two-sided) of B "
    "against A at one setting, with the difference of rates as effect size. Medians come with "
    "their 25–75 % range and the number of realizations n behind them. Claims measured by medians "
    "rather than success rates are tested with ranks: Wilcoxon's signed-rank test for values "
    "paired by network (before vs after flossing), Mann–Whitney's U for two groups of networks.",
]


class Section(NamedTuple):
    """One preset's part of ``index.md``."""

    lines: list[str]  # its markdown
    comparisons: pd.DataFrame  # :func:`comparisons`, with a ``preset`` column
    medians: pd.DataFrame  # :func:`rank_comparisons`, with a ``preset`` column
    summary: str  # :func:`summarize`: its sentence of measured numbers


def setting(col: Collection) -> str:
    """The values each setting key takes among a preset's runs, in numeric order."""
    parts = []
    for key, name in SETTING.items():
        if key in col.runs:
            values = sorted(set(col.runs[key].dropna().tolist()), key=lambda v: sort_key([v]))
            parts.append(f"{name} {'/'.join(format_value(v) for v in values)}")
    return ", ".join(parts)


def code_versions(col: Collection) -> str:
    """``0.1.0 @ 1a2b3c4 (6 runs)``: the code versions of the counted runs."""
    used = counted(col.results).drop_duplicates("run")
    per = used["code"].value_counts().sort_index()
    return "; ".join(f"{v} ({n} run(s))" for v, n in per.items()) or "–"


def preset_section(
    preset: str, result: dict[str, Any], root: Path, minutes: float | None = None
) -> Section:
    """One preset's :class:`Section`; ``result`` is :func:`flossrun.report.report` of its runs,
    ``root`` the folder of ``index.md``."""
    col = result["collection"].subset(preset)
    claim = Claim.of(col.report_node(preset))
    table = comparisons(col, preset)
    medians = rank_comparisons(col, preset)
    lines = [f"## {preset} — claim {claim.number}", "", f"*{claim.text}*", ""] if claim else []
    lines = lines or [f"## {preset}", ""]  # a preset without a claim
    summary = summarize(preset, col)
    lines += [f"- setting: {setting(col)}", f"- result: {summary}"]
    lines.append(f"- code: {code_versions(col)}")
    if minutes is not None:
        lines.append(f"- wall time: {minutes:.1f} min")
    runs = result["collection"].runs["run"].tolist()
    base = os.path.commonpath(runs) + os.sep if len(runs) > 1 else ""
    lines += [f"- note: {n.replace(base, '') if base else n}" for n in result["notes"]]
    problems = result["problems"]
    if len(problems):
        listed = "; ".join(
            f"{Path(r.run).name} ({r.status}: {r.reason})" for r in problems.itertuples(index=False)
        )
        lines.append(f"- {len(problems)} run(s) not finished or refused: {listed}")
    if len(table):
        lines.append("- comparisons: in *Claims at a glance* above")
    if len(medians):
        lines.append("- rank tests: in *Median comparisons* above")
    lines.append("")
    for fig in sorted(p for p in result["figures"] if p.suffix == ".png"):
        lines.append(f"![{fig.stem}]({fig.relative_to(root)})")
    lines.append("")
    return Section(lines, table.assign(preset=preset), medians.assign(preset=preset), summary)


def _all(tables: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The non-empty tables concatenated, ``claim`` and ``preset`` first; None if all empty."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return None
    every = pd.concat(tables, ignore_index=True)
    return every[["claim", "preset", *[c for c in every if c not in ("claim", "preset")]]]


def index_markdown(scale: str, sections: list[Section]) -> str:
    """The whole ``index.md``: title, how to read it, both tables, then each preset."""
    lines = [f"# flossrun figures ({scale} scale)", "", "Generated by `make figures`.", ""]
    lines += [*HEADER, ""]
    every = _all([s.comparisons for s in sections])
    if every is not None:
        lines += ["## Claims at a glance", "", *comparison_markdown(every), ""]
    medians = _all([s.medians for s in sections])
    if medians is not None:
        lines += ["## Median comparisons", "", *rank_markdown(medians), ""]
    for section in sections:
        lines += section.lines
    return "\n".join(lines)


def write_tables(root: Path, sections: list[Section]) -> list[Path]:
    """``comparisons.csv`` and ``median_comparisons.csv`` of every preset into ``root``."""
    written = []
    for name, field in (("comparisons.csv", "comparisons"), ("median_comparisons.csv", "medians")):
        every = _all([getattr(s, field) for s in sections])
        if every is not None:
            write_text(root / name, every.to_csv(index=False))
            written.append(root / name)
    return written
