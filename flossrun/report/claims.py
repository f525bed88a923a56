"""The paper's claims (SPEC §1) and, per preset, one sentence of measured numbers.

Each summary reads the collected frames of one preset (finished runs) and states what was
measured, whether or not it supports the claim; ``make figures`` writes them to ``index.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from flossrun.report.collect import Collection


@dataclass(frozen=True)
class Claim:
    number: str  # claim number of SPEC §1
    text: str  # the claim in one line


CLAIMS: dict[str, Claim] = {
    "lyapunov_control": Claim(
        "1", "Flossing drives λ1 to a chosen target within ~100 flossing steps."
    ),
    "spectrum_k": Claim(
        "1, 2", "Flossing k exponents moves λ1..λk to 0 and leaves the rest negative."
    ),
    "jacobian": Claim(
        "2",
        "Flossing keeps the long-term Jacobian better conditioned and error signals alive "
        "over long lags.",
    ),
    "preflossing": Claim("3", "Preflossing raises the success rate of training at long delays."),
    "during_training": Claim(
        "4", "Flossing during training further extends the delay that can be bridged."
    ),
    "k_sweep": Claim(
        "5", "Tasks that need more dimensions of memory profit from flossing more exponents k."
    ),
    "temporal_complexity": Claim(
        "5", "Preflossing helps across tasks of varying temporal complexity."
    ),
    "architectures": Claim(
        "5", "Flossing works across RNN architectures (vanilla, LSTM, GRU, orthogonal, stable)."
    ),
}


def _with_config(df: pd.DataFrame, col: Collection, keys: Sequence[str]) -> pd.DataFrame:
    """Join config columns (by run) onto a tidy frame."""
    missing = [k for k in keys if k not in df.columns]
    if not missing:
        return df
    return df.merge(col.runs[["run", *missing]], on="run", how="left")


def _success(col: Collection, by: Sequence[str]) -> pd.DataFrame:
    """Successes and counts of finished realizations per combination of ``by``."""
    res = col.results[col.results["status"] == "finished"]
    g = res.groupby(list(by), sort=True)["success"]
    return pd.DataFrame({"k": g.sum().astype(int), "n": g.size()}).reset_index()


def _rates(col: Collection, outer: str, inner: str) -> str:
    """``outer=v: inner a k/n, inner b k/n; ...`` success counts."""
    table = _success(col, [outer, inner])
    parts = []
    for o, g in table.groupby(outer, sort=True):
        cells = ", ".join(f"{i} {k}/{n}" for i, k, n in zip(g[inner], g["k"], g["n"], strict=True))
        parts.append(f"{outer.split('.')[-1]}={o}: {cells}")
    return "; ".join(parts)


def _lyapunov_control(col: Collection) -> str:
    s = _with_config(col.spectra, col, ["floss.target"])
    s = s[(s["stage"] == "preflossed") & (s["index"] == 1)]
    parts = []
    for target, g in s.groupby("floss.target"):
        hit = (g["value"] - float(target)).abs().lt(0.1).mean()
        parts.append(
            f"target {float(target):+.1f}: median λ1 {g['value'].median():+.3f}, "
            f"{hit:.0%} of {len(g)} within 0.1"
        )
    return "After flossing, " + "; ".join(parts) + " (nats/step)."


def _spectrum_k(col: Collection) -> str:
    s = _with_config(col.spectra, col, ["floss.k"])
    parts = []
    for k, g in s.groupby("floss.k"):
        k = int(k)
        before = g[(g["stage"] == "initial") & (g["index"] == 1)]["value"].median()
        after = g[g["stage"] == "preflossed"].groupby("index")["value"].median()
        rest = f", λ{k + 1} {after.get(k + 1, float('nan')):+.2f}" if k + 1 in after.index else ""
        lam1, lamk = after.get(1, float("nan")), after.get(k, float("nan"))
        parts.append(f"k={k}: λ1 {before:+.2f} → {lam1:+.2f}, λ{k} {lamk:+.2f}{rest}")
    return "Median exponents before → after flossing: " + "; ".join(parts) + " (nats/step)."


def _jacobian(col: Collection) -> str:
    d = _with_config(col.diagnostics, col, ["floss.name", "floss.k"])
    if not len(d):
        return "No diagnostics were recorded."
    lag = d["lag"].max()
    cond = d[(d["name"] == "log10_condition") & (d["lag"] == lag) & (d["index"] == d["floss.k"])]
    err = d[(d["name"] == "error_signal_norm")]
    err_lag = sorted(err["lag"].unique())[len(err["lag"].unique()) // 2]
    err = err[err["lag"] == err_lag]
    parts = []
    for (name, stage), g in cond.groupby(["floss.name", "stage"], sort=False):
        e = err[(err["floss.name"] == name) & (err["stage"] == stage)]["value"].median()
        parts.append(
            f"{name}/{stage}: log10 σ1/σk {g['value'].median():.1f}, ‖∂L/∂h‖ at τ={err_lag} {e:.2g}"
        )
    return (
        f"At lag τ={lag} (k={int(cond['floss.k'].iloc[0]) if len(cond) else '?'}): "
        + "; ".join(parts)
        + "."
    )


def _preflossing(col: Collection) -> str:
    parts = []
    for task in sorted(col.results["task.name"].dropna().unique()):
        keep = col.results["task.name"] == task
        sub_col = Collection(col.runs, col.results[keep], col.curves, col.spectra, col.diagnostics)
        parts.append(f"{task}: " + _rates(sub_col, "task.delay", "floss.name"))
    return "Successes / realizations — " + " | ".join(parts) + "."


def _during_training(col: Collection) -> str:
    return "Successes / realizations — " + _rates(col, "task.delay", "floss.name") + "."


def _k_sweep(col: Collection) -> str:
    res = col.results[col.results["status"] == "finished"]
    parts = []
    for k, g in res.groupby("floss.k"):
        parts.append(
            f"k={int(k)}: {int(g['success'].sum())}/{len(g)}, acc {g['test_accuracy'].median():.3f}"
        )
    return "Successes and median final test accuracy per k — " + "; ".join(parts) + "."


def _temporal_complexity(col: Collection) -> str:
    parts = []
    for m, _ in col.results.groupby("task.taps"):
        keep = col.results["task.taps"] == m
        sub_col = Collection(col.runs, col.results[keep], col.curves, col.spectra, col.diagnostics)
        parts.append(f"m={int(m)}: " + _rates(sub_col, "task.delay", "floss.name"))
    return "Successes / realizations — " + " | ".join(parts) + "."


def _architectures(col: Collection) -> str:
    parts = []
    sp = _with_config(col.spectra, col, ["model.name"])
    for model in sorted(col.results["model.name"].dropna().unique()):
        rates = []
        for task in sorted(col.results["task.name"].dropna().unique()):
            keep = (col.results["model.name"] == model) & (col.results["task.name"] == task)
            sub = Collection(col.runs, col.results[keep], col.curves, col.spectra, col.diagnostics)
            rates.append(f"{task} " + _rates(sub, "task.delay", "floss.name"))
        lam1 = sp[(sp["model.name"] == model) & (sp["index"] == 1)].groupby("stage")["value"]
        lam1 = lam1.median()
        flossed = (
            f", median λ1 {lam1['initial']:+.2f} → {lam1['preflossed']:+.2f} after preflossing"
            if {"initial", "preflossed"} <= set(lam1.index)
            else ""
        )
        parts.append(f"{model}: " + "; ".join(rates) + flossed)
    return "Successes / realizations — " + " | ".join(parts) + "."


SUMMARIES: dict[str, Callable[[Collection], str]] = {
    "lyapunov_control": _lyapunov_control,
    "spectrum_k": _spectrum_k,
    "jacobian": _jacobian,
    "preflossing": _preflossing,
    "during_training": _during_training,
    "k_sweep": _k_sweep,
    "temporal_complexity": _temporal_complexity,
    "architectures": _architectures,
}


def summarize(preset: str, col: Collection) -> str:
    """One sentence of measured numbers for a preset (never raises)."""
    if not len(col.results):
        return "No finished runs."
    try:
        return SUMMARIES[preset](col)
    except Exception as err:  # a summary must never stop the figures
        return f"(could not summarise: {type(err).__name__}: {err})"
