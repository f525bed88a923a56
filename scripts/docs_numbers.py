"""The measured-results tables of README.md and PAPER_MAP.md, rendered from the CSVs under
``docs/figures/`` (which ``scripts/docs_figures.py`` copies from ``make figures`` outputs), so the
numbers in the docs are the numbers the code produced.

    .venv/bin/python scripts/docs_numbers.py           # check: exit 1 and a diff if stale
    .venv/bin/python scripts/docs_numbers.py --write   # rewrite every generated block

A generated block in a document is everything between

    <!-- generated: <name> from docs/figures/<file>.csv[, docs/figures/<file>.csv] -->
    <!-- end generated -->

and is rendered by ``BLOCKS[<name>]`` from the files it names (the marker must name exactly the
block's sources). Success rates are ``successes/n`` with their 95 % Wilson interval, p-values
two-sided with two significant digits (:func:`flossrun.report.stats.format_p`), medians with
three; the formatting is deterministic, so the same CSV always gives the same text.
``tests/test_docs_numbers.py`` re-renders every block and fails when a document differs.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flossrun.report.stats import format_p, format_rate

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "PAPER_MAP.md")
FIGURES = Path("docs") / "figures"  # relative to the repository root, as the markers name it
END = "<!-- end generated -->"
BLOCK = re.compile(
    r"^<!-- generated: (?P<name>[\w-]+) from (?P<sources>[^\n]*?) -->\n(?P<body>.*?)^"
    + re.escape(END),
    re.MULTILINE | re.DOTALL,
)
COMMAND = "python scripts/docs_numbers.py --write"

Tables = dict[str, pd.DataFrame]


class DocsNumbersError(ValueError):
    """A generated block cannot be rendered: unknown name, wrong sources, or a row missing."""


# --- formatting ------------------------------------------------------------------------------


def cell(text: object) -> str:
    """``text`` for a markdown table cell: a literal ``|`` escaped, no line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def number(x: float) -> str:
    """Three significant digits (``0.398``, ``11.5``, ``1.16e-06``); ``–`` when undefined."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown lines of a table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def _effect(quantity: str, a: float, b: float) -> str:
    """Effect of a rank comparison: B − A in decades for a log10 quantity, else the ratio B/A."""
    if quantity.startswith("log10"):
        return f"{b - a:+.1f} decades"
    return f"×{b / a:.2g}" if a else "–"


# --- selecting rows --------------------------------------------------------------------------


def _rates(tables: Tables) -> pd.DataFrame:
    """The success comparisons (``comparisons_*.csv``), ``setting`` empty where blank."""
    (name,) = [n for n in tables if n.startswith("comparisons_")]
    return tables[name].fillna({"setting": ""})


def _ranks(tables: Tables) -> pd.DataFrame:
    """The rank tests (``median_comparisons_*.csv``), ``setting`` empty where blank."""
    (name,) = [n for n in tables if n.startswith("median_comparisons_")]
    return tables[name].fillna({"setting": ""})


def _one(df: pd.DataFrame, what: str, **match: str) -> pd.Series:
    """The single row of ``df`` whose columns equal ``match``; a clear error otherwise."""
    rows = df
    for key, value in match.items():
        rows = rows[rows[key].astype(str) == value]
    if len(rows) != 1:
        wanted = ", ".join(f"{k}={v!r}" for k, v in match.items())
        raise DocsNumbersError(f"{what}: {len(rows)} rows with {wanted} (expected 1)")
    return rows.iloc[0]


# --- the blocks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A success comparison of a preset at one setting: condition ``a`` vs ``b``."""

    label: str  # what is compared, in words (config values only, no measured numbers)
    preset: str
    setting: str
    a: str
    b: str


@dataclass(frozen=True)
class Rank:
    """A rank test of medians of a preset at one setting: condition ``a`` vs ``b``."""

    label: str
    preset: str
    setting: str
    quantity: str
    a: str
    b: str


@dataclass(frozen=True)
class BestK:
    """``k = 0`` vs the k with the most successes (every such k listed) at one k-sweep setting."""

    label: str
    preset: str
    setting: str


Headline = Rate | Rank | BestK

MEDIUM_HEADLINE: list[tuple[str, Headline]] = [
    ("1", Rank("|λ1 − λ*| before vs after flossing, λ* = 0", "lyapunov_control", "target=0",
               "|λ1 − λ*| (nats/step)", "initial", "preflossed")),
    ("2", Rank("log10 σ1/σk of the long-term Jacobian at τ = 200, unflossed vs flossed",
               "jacobian", "k=8, τ=200", "log10 σ1/σk", "none/final", "pre/preflossed")),
    ("3", Rate("delayed copy d = 30, floss none vs pre", "preflossing",
               "task=delayed_copy, delay=30", "floss=none", "floss=pre")),
    ("3", Rate("delayed XOR d = 30, floss none vs pre", "preflossing",
               "task=delayed_xor, delay=30", "floss=none", "floss=pre")),
    ("4", Rate("delayed XOR d = 40, floss pre vs pre_during", "during_training", "delay=40",
               "floss=pre", "floss=pre_during")),
    ("5", BestK("delayed copy d = 30, S = 1 channel: k = 0 vs best k", "k_sweep",
                "channels=1, delay=30")),
    ("5", BestK("delayed copy d = 20, S = 2 channels: k = 0 vs best k", "k_sweep",
                "channels=2, delay=20")),
    ("5", BestK("delayed copy d = 10, S = 4 channels: k = 0 vs best k", "k_sweep",
                "channels=4, delay=10")),
]  # fmt: skip


def _headline_row(claim: str, sel: Headline, tables: Tables) -> list[str]:
    """``claim | comparison | A | B | p`` of one selected comparison."""
    if isinstance(sel, Rank):
        r = _one(_ranks(tables), sel.label, preset=sel.preset, setting=sel.setting,
                 quantity=sel.quantity, a=sel.a, b=sel.b)  # fmt: skip
        a = f"{number(r.median_a)} (n = {r.n_a})"
        b = f"{number(r.median_b)} (n = {r.n_b})"
        return [claim, sel.label, a, b, format_p(r.p_value)]
    rates = _rates(tables)
    if isinstance(sel, Rate):
        r = _one(rates, sel.label, preset=sel.preset, setting=sel.setting, a=sel.a, b=sel.b)
        a, b = f"{r.successes_a}/{r.n_a}", f"{r.successes_b}/{r.n_b}"
        return [claim, sel.label, a, b, format_p(r.p_value)]
    rows = rates[(rates["preset"] == sel.preset) & (rates["setting"] == sel.setting)]
    rows = rows[rows["a"] == "k=0"]
    if not len(rows):
        raise DocsNumbersError(f"{sel.label}: no rows with preset={sel.preset!r}, "
                               f"setting={sel.setting!r}, a='k=0'")  # fmt: skip
    best = rows[rows["successes_b"] == rows["successes_b"].max()]
    ks = ", ".join(b.removeprefix("k=") for b in best["b"])
    first = best.iloc[0]
    a = f"{first.successes_a}/{first.n_a}"
    b = f"{first.successes_b}/{first.n_b} (k = {ks})"
    return [claim, sel.label, a, b, format_p(best["p_value"].min())]


def medium_headline(tables: Tables) -> list[str]:
    """README: one comparison per claim at medium scale (A, B, two-sided p)."""
    rows = [_headline_row(claim, sel, tables) for claim, sel in MEDIUM_HEADLINE]
    return table(["claim", "comparison (medium scale)", "A", "B", "p"], rows)


# Notes for the full table, by (preset, setting); "" matches every setting of the preset. Words
# and config values only: every measured number comes from the CSV.
NOTES: dict[tuple[str, str], str] = {
    ("jacobian", ""): "Mann–Whitney U",
    ("lyapunov_control", ""): "Wilcoxon signed-rank, paired per network",
    ("architectures", ""): "each model's training lr, flossing lr 1e-2; 10 networks per cell",
}


def _note(preset: str, setting: str, shown: set[str]) -> str:
    """The note of ``(preset, setting)``, else the preset's, which is shown on its first row."""
    if (preset, setting) in NOTES:
        return NOTES[(preset, setting)]
    if preset in shown:
        return ""
    shown.add(preset)
    return NOTES.get((preset, ""), "")


def medium_comparisons(tables: Tables) -> list[str]:
    """PAPER_MAP: every comparison at medium scale. Rank tests (median (n) per side, effect as
    B − A in decades for log10 quantities, else B/A), then success comparisons (successes/n with
    95 % Wilson interval, difference of rates, Fisher's exact p); comparisons of one condition A
    against several B at one setting (the k-sweep) share a row, B values joined by `` / ``; a
    preset's note is shown on its first row."""
    rows, shown = [], set()
    for r in _ranks(tables).itertuples(index=False):
        rows.append([
            str(r.claim), f"`{r.preset}`: {r.setting}; {r.quantity}", r.a,
            f"{number(r.median_a)} (n = {r.n_a})", r.b, f"{number(r.median_b)} (n = {r.n_b})",
            _effect(r.quantity, r.median_a, r.median_b), format_p(r.p_value),
            _note(r.preset, r.setting, shown),
        ])  # fmt: skip
    rates = _rates(tables)
    keys = ["claim", "preset", "setting", "a"]
    for (claim, preset, setting, a), g in rates.groupby(keys, sort=False):
        first = g.iloc[0]
        rows.append([
            str(claim), f"`{preset}`: {setting or '–'}", a,
            format_rate(first.successes_a, first.n_a), " / ".join(g["b"]),
            " / ".join(format_rate(k, n) for k, n in zip(g.successes_b, g.n_b, strict=True)),
            " / ".join(f"{d:+.2f}" for d in g["rate_difference"]),
            " / ".join(format_p(p) for p in g["p_value"]), _note(preset, setting, shown),
        ])  # fmt: skip
    header = ["claim", "preset: setting", "A", "A: median (n) or successes/n (95 % CI)", "B"]
    header += ["B: median (n) or successes/n (95 % CI)", "effect", "p (two-sided)", "note"]
    return table(header, rows)


def summaries(scale: str) -> Callable[[Tables], list[str]]:
    """PAPER_MAP: per preset of the last ``make figures`` call at ``scale``, its claim, wall time
    and the report's sentence of measured numbers (:func:`flossrun.report.claims.summarize`). A
    summary's own tables (what follows its first blank line: the orbit diagram's extrapolation,
    the smoothness windows) follow the table, each under its preset's name."""

    def render(tables: Tables) -> list[str]:
        rows, extras = [], []
        for r in tables[f"summaries_{scale}.csv"].itertuples(index=False):
            wall = "" if pd.isna(r.wall_minutes) else f" ({r.wall_minutes:.1f} min)"
            sentence, _, extra = str(r.result).partition("\n\n")
            rows.append([f"`{r.preset}`{wall}", str(r.claim), sentence.strip()])
            if extra.strip():
                extras += ["", f"`{r.preset}`:", "", *extra.strip().splitlines()]
        return table(["preset (wall time)", "claim", "result"], rows) + extras

    return render


def wall_times(scale: str) -> Callable[[Tables], list[str]]:
    """README: the wall time of the last ``make figures`` call at ``scale``, in all and per
    preset (minutes), from its summaries (presets without a recorded time are named)."""

    def render(tables: Tables) -> list[str]:
        df = tables[f"summaries_{scale}.csv"]
        timed = df[df["wall_minutes"].notna()]
        parts = [f"`{r.preset}` {r.wall_minutes:.1f}" for r in timed.itertuples(index=False)]
        untimed = df.loc[df["wall_minutes"].isna(), "preset"].tolist()
        line = (
            f"Wall time of the last `make figures SCALE={scale}` (2-core CPU, minutes): "
            f"**{timed['wall_minutes'].sum():.1f}** for {len(timed)} presets ({', '.join(parts)})"
        )
        if untimed:
            line += f"; not timed: {', '.join(f'`{p}`' for p in untimed)}"
        return [line + "."]

    return render


@dataclass(frozen=True)
class Block:
    """A generated block: the CSV files (names under ``docs/figures/``) and its renderer."""

    sources: tuple[str, ...]
    render: Callable[[Tables], list[str]]

    def marker(self, name: str) -> str:
        """The opening marker line of the block."""
        files = ", ".join(f"{FIGURES.as_posix()}/{s}" for s in self.sources)
        return f"<!-- generated: {name} from {files} -->"


MEDIUM = ("comparisons_medium.csv", "median_comparisons_medium.csv")
BLOCKS: dict[str, Block] = {
    "medium_headline": Block(MEDIUM, medium_headline),
    "medium_comparisons": Block(MEDIUM, medium_comparisons),
    "quick_summaries": Block(("summaries_quick.csv",), summaries("quick")),
    "quick_wall_times": Block(("summaries_quick.csv",), wall_times("quick")),
    "medium_summaries": Block(("summaries_medium.csv",), summaries("medium")),
    "medium_wall_times": Block(("summaries_medium.csv",), wall_times("medium")),
}


# --- documents -------------------------------------------------------------------------------


def render(name: str, figures: Path) -> str:
    """The body of block ``name`` (lines ending in a newline) from the CSVs in ``figures``."""
    if name not in BLOCKS:
        raise DocsNumbersError(f"unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
    block = BLOCKS[name]
    missing = [s for s in block.sources if not (figures / s).is_file()]
    if missing:
        raise DocsNumbersError(f"block {name}: no {', '.join(missing)} in {figures}")
    tables = {s: pd.read_csv(figures / s) for s in block.sources}
    return "\n".join(block.render(tables)) + "\n"


def rewrite(text: str, figures: Path) -> tuple[str, list[str]]:
    """``text`` with every generated block re-rendered, and the names of the blocks it holds."""
    names: list[str] = []

    def one(m: re.Match[str]) -> str:
        name = m["name"]
        names.append(name)
        body = render(name, figures)
        marker = BLOCKS[name].marker(name)
        if m.group(0).split("\n", 1)[0] != marker:
            raise DocsNumbersError(f"block {name}: the marker must read {marker}")
        return f"{marker}\n{body}{END}"

    return BLOCK.sub(one, text), names


def stale(root: Path = ROOT) -> dict[str, list[str]]:
    """``{document: [block, ...]}`` of the blocks under ``root`` whose text differs from what
    the CSVs in ``root/docs/figures`` render."""
    out: dict[str, list[str]] = {}
    for doc in DOCUMENTS:
        text = (root / doc).read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            new, _ = rewrite(m.group(0), root / FIGURES)
            if new != m.group(0):
                out.setdefault(doc, []).append(m["name"])
    return out


def update(root: Path = ROOT) -> list[str]:
    """Rewrite every generated block of the documents under ``root``; returns ``doc: block``
    of the blocks that changed."""
    changed = []
    for doc, names in stale(root).items():
        path = root / doc
        new, _ = rewrite(path.read_text(encoding="utf-8"), root / FIGURES)
        path.write_text(new, encoding="utf-8")
        changed += [f"{doc}: {n}" for n in names]
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the stale blocks")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        if args.write:
            changed = update(args.root)
            print("\n".join(f"rewrote {c}" for c in changed) or "every block up to date")
            return 0
        found = stale(args.root)
    except DocsNumbersError as err:
        print(f"docs_numbers: error: {err}", file=sys.stderr)
        return 2
    for doc, names in found.items():
        text = (args.root / doc).read_text(encoding="utf-8")
        new, _ = rewrite(text, args.root / FIGURES)
        diff = difflib.unified_diff(text.splitlines(), new.splitlines(), doc, doc, lineterm="")
        print("\n".join(diff))
        print(f"{doc}: stale block(s) {', '.join(names)}; run {COMMAND}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
