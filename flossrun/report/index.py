"""``index.md`` of ``make figures``: on top every success comparison of every claim in one
table (successes/n with 95 % Wilson intervals, difference of rates, Fisher's exact p), then the
rank tests of the claims measured by medians (median (n) per side, Wilcoxon or Mann–Whitney p);
then per preset its claim, setting, measured numbers, code versions, notes and figures.
:func:`write_tables` writes both tables as CSV next to ``index.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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

Section = tuple[list[str], pd.DataFrame, pd.DataFrame]


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
    """The markdown lines of one preset, its success comparisons (:func:`comparisons`) and its
    rank tests (:func:`rank_comparisons`), both tables with a ``preset`` column.

    ``result`` is :func:`flossrun.report.report` of the preset's runs, ``root`` the folder of
    ``index.md`` (figure links are relative to it).
    """
    col = result["collection"].subset(preset)
    claim = Claim.of(col.report_node(preset))
    table = comparisons(col, preset)
    medians = rank_comparisons(col, preset)
    lines = [f"## {preset} — claim {claim.number}", "", f"*{claim.text}*", ""] if claim else []
    lines = lines or [f"## {preset}", ""]  # a preset without a claim
    lines += [f"- setting: {setting(col)}", f"- result: {summarize(preset, col)}"]
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
    return lines, table.assign(preset=preset), medians.assign(preset=preset)


def _all(tables: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The non-empty tables concatenated, ``claim`` and ``preset`` first; None if all empty."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return None
    every = pd.concat(tables, ignore_index=True)
    return every[["claim", "preset", *[c for c in every if c not in ("claim", "preset")]]]


def index_markdown(scale: str, sections: list[Section]) -> str:
    """The whole ``index.md``: title, how to read it, all comparisons, all rank tests, then
    each preset."""
    lines = [f"# flossrun figures ({scale} scale)", "", "Generated by `make figures`.", ""]
    lines += [*HEADER, ""]
    every = _all([t for _, t, _ in sections])
    if every is not None:
        lines += ["## Claims at a glance", "", *comparison_markdown(every), ""]
    medians = _all([m for _, _, m in sections])
    if medians is not None:
        lines += ["## Median comparisons", "", *rank_markdown(medians), ""]
    for section, _, _ in sections:
        lines += section
    return "\n".join(lines)


def write_tables(root: Path, sections: list[Section]) -> list[Path]:
    """``comparisons.csv`` (success rates, Fisher) and ``median_comparisons.csv`` (rank tests)
    of every preset into ``root``, next to ``index.md``; returns the files written."""
    written = []
    for name, i in (("comparisons.csv", 1), ("median_comparisons.csv", 2)):
        every = _all([s[i] for s in sections])
        if every is not None:
            write_text(root / name, every.to_csv(index=False))
            written.append(root / name)
    return written
