"""The report's statistics and their formatting, in one place (docs/design.md §5, §8): success
counts with Wilson intervals, Fisher's exact test, rank tests (Wilcoxon signed-rank, Mann–Whitney
U), medians with their 25–75 % range, markdown tables. Every one is over *counted* realizations
only: finished, and not a duplicate of a network already counted (:func:`counted`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, fisher_exact, mannwhitneyu, wilcoxon

CONFIDENCE = 0.95


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate; ``(nan, nan)`` when ``n == 0``."""
    if n == 0:
        return math.nan, math.nan
    ci = binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=CONFIDENCE, method="wilson"
    )
    return float(ci.low), float(ci.high)


def fisher_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test of ``k_a/n_a`` vs ``k_b/n_b`` (nan if n is 0)."""
    if n_a == 0 or n_b == 0:
        return math.nan
    table = [[int(k_a), int(n_a - k_a)], [int(k_b), int(n_b - k_b)]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)


def finite(values: Sequence[float] | pd.Series) -> np.ndarray:
    """The finite numbers among ``values`` (text and missing values dropped)."""
    x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    return x[np.isfinite(x)]


def wilcoxon_p(before: Sequence[float], after: Sequence[float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired ``after − before`` (pairs
    with a non-finite value dropped; nan with none or all differences 0; exact for small n)."""
    a = pd.to_numeric(pd.Series(list(before)), errors="coerce").to_numpy(float)
    b = pd.to_numeric(pd.Series(list(after)), errors="coerce").to_numpy(float)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = b[keep] - a[keep]
    if not len(diff) or not diff.any():
        return math.nan
    return float(wilcoxon(diff, alternative="two-sided").pvalue)


def mannwhitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann–Whitney U test of samples ``a`` vs ``b`` (finite values
    only; nan when either is empty). Exact for small samples without ties (scipy)."""
    x, y = finite(a), finite(b)
    if not len(x) or not len(y):
        return math.nan
    return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)


def counted(results: pd.DataFrame) -> pd.DataFrame:
    """The realizations that enter statistics: finished and not a duplicate network."""
    return results[(results["status"] == "finished") & results["counted"].astype(bool)]


def success_counts(results: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per combination of ``by`` (sorted): ``n``, ``successes``, ``rate``, ``ci_low``, ``ci_high``
    (the one place successes are counted)."""
    done = counted(results)
    columns = [*by, "n", "successes", "rate", "ci_low", "ci_high"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    g = done["success"].astype("float64").groupby([done[k] for k in by], sort=True)
    table = pd.DataFrame({"n": g.size(), "successes": g.sum().astype(int)}).reset_index()
    table["rate"] = table["successes"] / table["n"]
    bounds = [wilson(k, n) for k, n in zip(table["successes"], table["n"], strict=True)]
    table["ci_low"] = [lo for lo, _ in bounds]
    table["ci_high"] = [hi for _, hi in bounds]
    return table[columns]


def quartiles(values: pd.Series) -> tuple[float, float, float]:
    """25th, 50th and 75th percentile of the finite values (nan when there are none)."""
    x = pd.to_numeric(values, errors="coerce").replace([math.inf, -math.inf], math.nan).dropna()
    if x.empty:
        return math.nan, math.nan, math.nan
    q = x.quantile([0.25, 0.5, 0.75])
    return float(q[0.25]), float(q[0.5]), float(q[0.75])


def format_rate(successes: int, n: int) -> str:
    """``3/10 (0.11–0.60)``: successes of n and the 95 % Wilson interval."""
    lo, hi = wilson(successes, n)
    return f"{successes}/{n}" + ("" if n == 0 else f" ({lo:.2f}–{hi:.2f})")


def format_p(p: float) -> str:
    """A p-value with two significant digits (``<0.0001`` below that, ``–`` when undefined)."""
    if math.isnan(p):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a markdown table: ``header``, the separator, one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
