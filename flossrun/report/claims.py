"""The paper's claims (docs/design.md §1) as ``index.md`` states them: :func:`comparisons`
(success rates of a preset's ``report.claim.compare`` pairs, Fisher's exact test),
:func:`rank_comparisons` (claims measured by medians: Wilcoxon, Mann–Whitney) and
:func:`summarize` (one sentence of measured numbers per preset).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from flossrun.report.attractors import landscape_summary, orbit_summary, smoothness_summary
from flossrun.report.collect import Collection
from flossrun.report.conditions import (
    as_floats,
    as_keys,
    format_value,
    setting_label,
    short_names,
    sort_key,
)
from flossrun.report.presets import Claim
from flossrun.report.regions import regions_summary
from flossrun.report.stats import (
    counted,
    finite,
    fisher_p,
    format_p,
    format_rate,
    mannwhitney_p,
    markdown_table,
    quartiles,
    success_counts,
    wilcoxon_p,
)

COMPARISON_COLUMNS = [
    "claim", "setting", "a", "successes_a", "n_a", "b", "successes_b", "n_b",
    "rate_difference", "p_value",
]  # fmt: skip


def _pairs(claim: Claim, values: list[Any]) -> list[tuple[Any, Any]]:
    """The claim's pairs among ``values`` (compared as text), or each value vs the lowest."""
    if claim.pairs:
        text = {str(v): v for v in values}
        return [(text[a], text[b]) for a, b in claim.pairs if a in text and b in text]
    ordered = sorted(values, key=lambda v: sort_key([v]))
    return [(ordered[0], v) for v in ordered[1:]]


def comparisons(col: Collection, preset: str) -> pd.DataFrame:
    """Fisher's exact test of each compared pair at every setting of the other condition keys:
    one row (``COMPARISON_COLUMNS``) per pair and setting, in numeric order; ``rate_difference``
    is rate b − rate a. Empty for presets without a comparison."""
    claim = Claim.of(col.report_node(preset))
    key = claim.compare if claim else None
    if key is None or key not in col.results.columns:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    within = [k for k in _cell_keys(col, preset) if k != key and k in col.results.columns]
    table = success_counts(col.results, [*within, key])
    name, rows = short_names([key])[key], []
    groups = table.groupby(within, sort=False) if within else [((), table)]
    for values, g in sorted(groups, key=lambda item: sort_key(item[0])):
        setting = setting_label(within, values)
        by_value = {str(r[len(within)]): r for r in g.itertuples(index=False)}
        for a, b in _pairs(claim, g[key].tolist()):
            ra, rb = by_value[str(a)], by_value[str(b)]
            row = [claim.number, setting, f"{name}={format_value(a)}", ra.successes, ra.n]
            row += [f"{name}={format_value(b)}", rb.successes, rb.n, rb.rate - ra.rate]
            rows.append([*row, fisher_p(ra.successes, ra.n, rb.successes, rb.n)])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _cell_keys(col: Collection, preset: str) -> list[str]:
    """The condition keys of ``preset``, else of the only experiment (a pilot run as it)."""
    if preset in col.cell_keys or len(col.experiments) != 1:
        return col.cell_keys.get(preset, [])
    return col.cell_keys.get(col.experiments[0], [])


def _markdown(
    table: pd.DataFrame, header: list[str], cells: Callable[[Any], list[str]]
) -> list[str]:
    """Markdown lines of a comparison ``table``: claim, preset (if a column), ``cells(row)``."""
    first = ["claim", "preset"] if "preset" in table.columns else ["claim"]
    rows = ([str(getattr(r, c)) for c in first] + cells(r) for r in table.itertuples(index=False))
    return markdown_table([*first, *header], rows)


def comparison_markdown(table: pd.DataFrame) -> list[str]:
    """``table`` of :func:`comparisons` as markdown lines (successes/n with 95 % Wilson CI)."""
    header = ["setting", "A", "successes/n (95 % CI)", "B", "successes/n (95 % CI)"]
    header += ["Δ rate (B − A)", "p (Fisher, two-sided)"]
    return _markdown(table, header, lambda r: [
        r.setting or "–", r.a, format_rate(r.successes_a, r.n_a), r.b,
        format_rate(r.successes_b, r.n_b), f"{r.rate_difference:+.2f}", format_p(r.p_value),
    ])  # fmt: skip


RANK_COLUMNS = [
    "claim", "setting", "quantity", "a", "median_a", "n_a", "b", "median_b", "n_b", "test",
    "p_value",
]  # fmt: skip
WILCOXON = "Wilcoxon signed-rank, paired"
MANN_WHITNEY = "Mann–Whitney U"
DISTANCE = "|λ1 − λ*| (nats/step)"


def _rank_row(
    quantity: str, setting: str, a: str, x: pd.Series, b: str, y: pd.Series, paired: bool = False
) -> dict[str, Any]:
    """One row of :func:`rank_comparisons`: medians, n and the two-sided p of Wilcoxon's
    signed-rank test (``paired``: ``x``, ``y`` aligned) or Mann–Whitney's U."""
    return {
        "setting": setting,
        "quantity": quantity,
        "a": a,
        "median_a": quartiles(x)[1],
        "n_a": len(finite(x)),
        "b": b,
        "median_b": quartiles(y)[1],
        "n_b": len(finite(y)),
        "test": WILCOXON if paired else MANN_WHITNEY,
        "p_value": wilcoxon_p(x, y) if paired else mannwhitney_p(x, y),
    }


def _target_distance_tests(col: Collection) -> list[dict[str, Any]]:
    """Claim 1, per target λ*: |λ1 − λ*| (nats/step) at initialisation vs after preflossing,
    paired by network (run, realization); Wilcoxon signed-rank test."""
    s = _with_config(col.spectra, col, ["floss.target"])
    s = s[(s["index"] == 1) & s["stage"].isin(["initial", "preflossed"])]
    rows = []
    for target, g in _groups(s, "floss.target"):
        lam_star = (as_floats(target) or [np.nan])[0]
        pairs = g.pivot_table(index=["run", "realization"], columns="stage", values="value")
        if not {"initial", "preflossed"} <= set(pairs.columns):
            continue
        pairs = (pairs[["initial", "preflossed"]] - lam_star).abs().dropna()
        setting = f"target={format_value(target)}"
        before, after = pairs["initial"], pairs["preflossed"]
        row = _rank_row(DISTANCE, setting, "initial", before, "preflossed", after, paired=True)
        rows.append(row)
    return rows


def _per_network(d: pd.DataFrame, name: str, stage: str) -> pd.Series:
    """One value per network (run, realization) of the rows of ``d`` at ``name`` and ``stage``."""
    rows = d[(d["floss.name"] == name) & (d["stage"] == stage)]
    return rows.groupby(["run", "realization"])["value"].first()


def _jacobian_frames(col: Collection):
    """Diagnostics with ``floss.name``/``floss.k``: log10 σ1/σk at the largest lag (index k),
    ‖∂L/∂h_{t−τ}‖ at the middle lag and that lag; ``None`` without diagnostics."""
    d = _with_config(col.diagnostics, col, ["floss.name", "floss.k"])
    if not len(d):
        return None
    cond = d[(d["name"] == "log10_condition") & (d["index"] == d["floss.k"])]
    cond = cond[cond["lag"] == d["lag"].max()]
    err = d[d["name"] == "error_signal_norm"]
    lags = sorted(err["lag"].unique())
    err_lag = lags[len(lags) // 2] if lags else np.nan
    return cond, err[err["lag"] == err_lag], err_lag


def _jacobian_tests(col: Collection) -> list[dict[str, Any]]:
    """Claim 2, per flossed k: log10 σ1/σk at the largest lag and ‖∂L/∂h‖ at the middle lag,
    ``none/final`` vs ``pre/preflossed`` and ``pre/final``; Mann–Whitney U test."""
    frames = _jacobian_frames(col)
    if frames is None:
        return []
    cond, err, _ = frames
    rows = []
    for quantity, rows_of in (("log10 σ1/σk", cond), ("‖∂L/∂h‖", err)):
        for k, g in _groups(rows_of, "floss.k"):
            if not len(g):
                continue
            setting = f"k={format_value(k)}, τ={format_value(g['lag'].iloc[0])}"
            unflossed = _per_network(g, "none", "final")
            for stage in ("preflossed", "final"):
                flossed = _per_network(g, "pre", stage)
                if len(unflossed) and len(flossed):
                    b = f"pre/{stage}"
                    rows.append(_rank_row(quantity, setting, "none/final", unflossed, b, flossed))
    return rows


RANK_TESTS: dict[str, Callable[[Collection], list[dict[str, Any]]]] = {
    "target_distance": _target_distance_tests,
    "jacobian": _jacobian_tests,
}  # a preset's report.claim.ranks names one


def rank_comparisons(col: Collection, preset: str) -> pd.DataFrame:
    """The rank test ``report.claim.ranks`` names (:data:`RANK_TESTS`), one row
    (``RANK_COLUMNS``) per comparison, n counting networks with a finite value; empty for
    presets without one."""
    claim = Claim.of(col.report_node(preset))
    test = RANK_TESTS.get(claim.ranks) if claim and claim.ranks else None
    rows = test(col) if test is not None else []
    return pd.DataFrame([{"claim": claim.number, **r} for r in rows], columns=RANK_COLUMNS)


def rank_markdown(table: pd.DataFrame) -> list[str]:
    """``table`` of :func:`rank_comparisons` as markdown lines (median (n) per side, test, p)."""
    header = ["setting", "A", "median A (n)", "B", "median B (n)", "test", "p (two-sided)"]
    return _markdown(table, header, lambda r: [
        f"{r.setting}: " + r.quantity.replace("|", "\\|"),  # a literal | in a markdown cell
        r.a, f"{r.median_a:.3g} ({r.n_a})", r.b, f"{r.median_b:.3g} ({r.n_b})", r.test,
        format_p(r.p_value),
    ])  # fmt: skip


def _spread(values: pd.Series, fmt: str = "+.3f") -> str:
    """``median [25 %, 75 %], n=...`` of the finite values."""
    q25, q50, q75 = quartiles(values)
    n = int(pd.to_numeric(values, errors="coerce").notna().sum())
    return f"{q50:{fmt}} [{q25:{fmt}}, {q75:{fmt}}] (n={n})"


def _with_config(df: pd.DataFrame, col: Collection, keys: list[str]) -> pd.DataFrame:
    """Join config columns (by run) onto a tidy frame; a key no run recorded stays empty."""
    missing = [k for k in keys if k not in df.columns]
    runs = col.runs.reindex(columns=["run", *missing])
    return df.merge(runs, on="run", how="left") if missing else df


def _groups(df: pd.DataFrame, key: str):
    """``df`` grouped by ``key``, in numeric order of its values."""
    return sorted(df.groupby(key), key=lambda item: sort_key([item[0]]))


def _lyapunov_control(col: Collection, preset: str) -> str:
    s = _with_config(col.spectra, col, ["floss.target"])
    s = s[(s["stage"] == "preflossed") & (s["index"] == 1)]
    parts = []
    for target, g in _groups(s, "floss.target"):
        hit = (g["value"] - float(target)).abs().lt(0.1)
        parts.append(
            f"target {float(target):+.1f}: median λ1 [25–75 %] {_spread(g['value'])}, "
            f"{int(hit.sum())}/{len(g)} within 0.1"
        )
    return "After flossing, " + "; ".join(parts) + " (nats/step)."


def _spectrum_k(col: Collection, preset: str) -> str:
    s = _with_config(col.spectra, col, ["floss.k"])
    parts = []
    for k, g in _groups(s, "floss.k"):
        k = int(k)
        before = g[(g["stage"] == "initial") & (g["index"] == 1)]["value"]
        after = g[g["stage"] == "preflossed"]
        lam = {i: after[after["index"] == i]["value"].median() for i in (1, k, k + 1)}
        rest = f", λ{k + 1} {lam[k + 1]:+.2f}" if (after["index"] == k + 1).any() else ""
        lam1 = _spread(after[after["index"] == 1]["value"], "+.2f")
        parts.append(f"k={k}: λ1 {before.median():+.2f} → {lam1}, λ{k} {lam[k]:+.2f}{rest}")
    head = "Median exponents before → after flossing (λ1 with its 25–75 % range and n)"
    return f"{head}: {'; '.join(parts)} (nats/step)."


def _jacobian(col: Collection, preset: str) -> str:
    frames = _jacobian_frames(col)
    if frames is None:
        return "No diagnostics were recorded."
    cond, err, err_lag = frames
    parts = []
    for (name, stage), g in cond.groupby(["floss.name", "stage"], sort=False):
        e = err[(err["floss.name"] == name) & (err["stage"] == stage)]["value"].median()
        parts.append(
            f"{name}/{stage}: log10 σ1/σk {_spread(g['value'], '.1f')}, "
            f"‖∂L/∂h‖ at τ={err_lag} {e:.2g}"
        )
    k = int(cond["floss.k"].iloc[0]) if len(cond) else "?"
    lag = col.diagnostics["lag"].max()
    return f"At lag τ={lag} (k={k}), medians [25–75 %]: " + "; ".join(parts) + "."


def _rate_cells(results: pd.DataFrame, keys: list[str], sep: str) -> list[str]:
    """``setting<sep>successes/n (95 % CI)`` per combination of ``keys``, in numeric order."""
    rows = success_counts(results, keys).itertuples(index=False)
    rows = sorted(rows, key=lambda r: sort_key(r[: len(keys)]))
    return [
        f"{setting_label(keys, r[: len(keys)])}{sep}{format_rate(r.successes, r.n)}" for r in rows
    ]


def _success_sentence(col: Collection, preset: str) -> str:
    """Successes/n (95 % CI) of every condition of the preset, in condition order."""
    keys = [k for k in col.cell_keys.get(preset, []) if k in col.results.columns]
    if not keys:
        done = counted(col.results)
        return f"Successes / realizations: {format_rate(int(done['success'].sum()), len(done))}."
    cells = "; ".join(_rate_cells(col.results, keys, ": "))
    return f"Successes / realizations (95 % CI) — {cells}."


def _k_rates(results: pd.DataFrame) -> str:
    """``k=0: 0/3 (0.00–0.56), acc 0.498 [0.498, 0.499] (n=3); k=1: ...``, in numeric order."""
    rates = success_counts(results, ["floss.k"]).set_index("floss.k")
    return "; ".join(
        f"k={format_value(k)}: {format_rate(rates.loc[k, 'successes'], rates.loc[k, 'n'])}, "
        f"acc {_spread(g['test_accuracy'], '.3f')}"
        for k, g in _groups(counted(results), "floss.k")
    )


def _k_sweep(col: Collection, preset: str) -> str:
    """Per setting of the other condition keys: successes (95 % CI) and median accuracy per k."""
    within = [k for k in _cell_keys(col, preset) if k != "floss.k" and k in col.results]
    head = "Successes (95 % CI) and median final test accuracy [25–75 %] per k — "
    if not within:
        return head + _k_rates(col.results) + "."
    groups = counted(col.results).groupby(within)
    parts = [
        f"{setting_label(within, values)}: {_k_rates(g)}"
        for values, g in sorted(groups, key=lambda item: sort_key(item[0]))
    ]
    return head + " | ".join(parts) + "."


def _architectures(col: Collection, preset: str) -> str:
    """Per architecture: successes/n (95 % CI) per setting of the other grid keys, and median
    λ1 at initialisation and after preflossing."""
    parts = []
    sp = _with_config(col.spectra, col, ["model.name"])
    res = counted(col.results)
    grid = as_keys(col.report_node(preset).get("grid"))
    keys = [k for k in grid if k != "model.name" and k in res.columns]
    for model in sorted(res["model.name"].dropna().unique()):
        cells = _rate_cells(res[res["model.name"] == model], keys, " ")
        lam1 = sp[(sp["model.name"] == model) & (sp["index"] == 1)].groupby("stage")["value"]
        lam1 = lam1.median()
        flossed = (
            f"; median λ1 {lam1['initial']:+.2f} → {lam1['preflossed']:+.2f} after preflossing"
            if {"initial", "preflossed"} <= set(lam1.index)
            else ""
        )
        parts.append(f"{model}: " + "; ".join(cells) + flossed)
    return "Successes / realizations (95 % CI) — " + " | ".join(parts) + "."


SUMMARIES: dict[str, Callable[[Collection, str], str]] = {
    "success": _success_sentence,
    "lyapunov_control": _lyapunov_control,
    "spectrum_k": _spectrum_k,
    "jacobian": _jacobian,
    "k_sweep": _k_sweep,
    "architectures": _architectures,
    "orbit_diagram": lambda col, _: orbit_summary(col),
    "loss_landscape": lambda col, _: landscape_summary(col),
    "smoothness": lambda col, _: smoothness_summary(col),
    "regions": lambda col, _: regions_summary(col),
}  # a preset's report.summary names one; without it: "success"


def summarize(preset: str, col: Collection) -> str:
    """One sentence of measured numbers for a preset: the one its ``report.summary`` names
    (:data:`SUMMARIES`, default ``success``); never raises."""
    if not len(counted(col.results)):
        return "No finished runs."
    name = str(col.report_node(preset).get("summary") or "success")  # null: as if absent
    if name not in SUMMARIES:
        return f"(unknown report.summary {name!r}; known: {', '.join(SUMMARIES)})"
    try:
        return SUMMARIES[name](col, preset)
    except Exception as err:  # a summary must never stop the figures
        return f"(could not summarise: {type(err).__name__}: {err})"
