"""The ``regions`` preset's figure and numbers (docs/design.md §11, claim 9): memory and
smoothness of flossed networks against their measured λ1, as flossing placed them and after
training, from each run's ``regions.csv`` (one row per network and stage). Regions: contracting
(λ1 ≤ −ε), neutral (|λ1| < ε), chaotic (λ1 ≥ ε), ε the runs' ``analysis.neutral_band``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flossrun.analyses.regions import STAGES
from flossrun.analyses.smoothness import CLASSES
from flossrun.contract import REGIONS_CSV
from flossrun.report.attractors import BOUNDED, REGIME_COLOURS, run_csvs
from flossrun.report.collect import Collection
from flossrun.report.conditions import Conditions, finish
from flossrun.report.stats import format_rate, markdown_table, quartiles
from flossrun.report.style import new_figure, no_data

PANELS = (
    ("error_signal_norm", "error signal at the longest lag", True),
    ("log10_condition", "log10 condition number at the longest lag", False),
    ("rate_L", "growth rate of ln L (per step)", False),
    ("rate_L_g", "growth rate of ln L_g (per step)", False),
)


def region_rows(exp: Collection) -> pd.DataFrame:
    """Every network's rows of ``regions.csv`` with ``run``, ``condition`` and the run's
    ``band`` (``analysis.neutral_band``)."""
    df = run_csvs(exp, REGIONS_CSV)
    return df.assign(band=df["run"].map(exp.config()["analysis.neutral_band"])) if len(df) else df


def _shade(ax, eps: float, lo: float, hi: float) -> None:
    """The three regions as vertical bands over [lo, hi] (λ1, nats/step)."""
    for regime, (a, b) in zip(CLASSES, ((lo, -eps), (-eps, eps), (eps, hi)), strict=True):
        if b > a:
            ax.axvspan(a, b, color=REGIME_COLOURS[regime], alpha=0.08, lw=0)


def regions(exp: Collection) -> Figure | None:
    """Memory, smoothness (growth rates, with the lines λ1 and 2 λ1) and success against the
    measured λ1, one colour per condition, regions shaded; one row of panels per stage."""
    df = region_rows(exp)
    if df.empty:
        return None
    cond = Conditions.of(exp)
    eps = float(df["band"].iloc[0])
    lo = min(df["lambda_1"].min(), -eps) - 0.05
    hi = max(df["lambda_1"].max(), eps) + 0.05
    stages = [s for s in STAGES if (df["stage"] == s).any()]
    fig, axes = new_figure(5, len(stages), width=3.2, height=3.0)
    for row, stage in zip(axes, stages, strict=True):
        at = df[df["stage"] == stage]
        for ax, (key, title, log) in zip(row, PANELS, strict=False):
            _shade(ax, eps, lo, hi)
            for name, colour, g in cond.groups(at):
                ax.scatter(g["lambda_1"], g[key], color=colour, s=14, label=cond.legend(name))
            if key.startswith("rate"):
                x = np.linspace(max(lo, 0), hi, 20)
                ax.plot(x, x * (2 if key == "rate_L_g" else 1), ":", color="0.3", lw=1)
                ax.axhline(BOUNDED, color="0.5", lw=0.6, ls="--")
            if log and (at[key] > 0).any():
                ax.set_yscale("log")
            ax.set(title=f"{stage}: {title}", xlabel=r"measured $\lambda_1$ (nats/step)",
                   xlim=(lo, hi))  # fmt: skip
        ax = row[4]
        _shade(ax, eps, lo, hi)
        for _, colour, g in cond.groups(at):
            jitter = 0.04 * (np.arange(len(g)) % 3 - 1)
            ax.scatter(g["lambda_1"], g["success"].astype(float) + jitter, color=colour, s=14)
        ax.set(title=f"{stage}: delayed-copy success after training",
               xlabel=r"measured $\lambda_1$ (nats/step)", yticks=[0, 1],
               yticklabels=["fail", "success"], xlim=(lo, hi))  # fmt: skip
        for a in row:
            if not a.collections:
                no_data(a)
    axes[0, 0].legend(fontsize=6)
    what = (r"Memory and smoothness vs $\lambda_1$, placed by flossing (and gain) and after "
            f"training; contracting / neutral (|λ1| < {eps:g}) / chaotic shaded")  # fmt: skip
    return finish(fig, cond, what)


TABLE_CELLS = (
    ("lambda_1", "+.3f"), ("error_signal_norm", ".3g"), ("log10_condition", ".2f"),
    ("rate_L", "+.4f"), ("rate_L_g", "+.4f"),
)  # fmt: skip


def _cell(values: pd.Series, fmt: str) -> str:
    q = quartiles(values.dropna())
    return f"{q[1]:{fmt}} ({q[0]:{fmt}}…{q[2]:{fmt}})" if np.isfinite(q[1]) else "–"


def regions_table(df: pd.DataFrame) -> str:
    """Per stage and measured region: n, λ1, memory, smoothness and success after training
    (medians, 25–75 %; success with its Wilson 95 % interval)."""
    header = [
        "stage", "region (measured λ1)", "n", "λ1", "error signal, longest lag", "log10 condition",
        "rate ln L /step", "rate ln L_g /step", "success (95 % CI)",
    ]  # fmt: skip
    rows = []
    for stage, regime in [(s, r) for s in STAGES for r in CLASSES]:
        g = df[(df["stage"] == stage) & (df["regime"] == regime)]
        cells = [_cell(g[key], fmt) for key, fmt in TABLE_CELLS]
        rate = format_rate(int(g["success"].sum()), len(g)) if len(g) else "–"
        rows.append([stage, regime, str(len(g)), *cells, rate])
    return "\n".join(markdown_table(header, rows))


def verdict(df: pd.DataFrame) -> str:
    """Whether the three regions appear, part by part (medians per region: error signal at
    the longest lag, growth rate of ln L against 0.01 per step)."""
    med = df.groupby("regime")[["error_signal_norm", "rate_L"]].median()
    have = [r for r in CLASSES if r in med.index]
    parts = {"all three regions populated": len(have) == 3}
    if {"contracting", "neutral"} <= set(have):
        e = med["error_signal_norm"]
        parts["memory longer at λ1 ≈ 0 than at λ1 < 0"] = bool(e["neutral"] > e["contracting"])
    if "chaotic" in have:
        parts["L grows with T where λ1 > 0"] = bool(med.loc["chaotic", "rate_L"] > BOUNDED)
    calm = [r for r in ("contracting", "neutral") if r in have]
    if calm:
        parts["L bounded where λ1 ≤ 0"] = bool((med.loc[calm, "rate_L"] < BOUNDED).all())
    ok = all(parts.values())
    detail = "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in parts.items())
    return f"The three regions {'appear' if ok else 'do not all appear'} ({detail})."


def regions_summary(col: Collection) -> str:
    """Per stage :func:`verdict` and each condition's median λ1, then :func:`regions_table`."""
    df = region_rows(col)
    if df.empty:
        return "No regions files."
    parts = []
    for stage in STAGES:
        at = df[df["stage"] == stage]
        if at.empty:
            continue
        per = [f"{name}: λ1 {_cell(g['lambda_1'], '+.3f')}, n = {len(g)}"
               for name, g in at.groupby("condition", sort=False)]  # fmt: skip
        parts.append(f"**{stage.capitalize()}:** {verdict(at)} Per condition: {'; '.join(per)}.")
    return f"{' '.join(parts)}\n\n{regions_table(df)}\n"
