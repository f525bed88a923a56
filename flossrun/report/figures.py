"""The preset figures of docs/design.md §8, one function each: ``figure(exp) -> Figure | None``
of one experiment's finished runs (:meth:`Collection.subset`), ``None`` without its data.
Medians come with 25–75 % bands, success rates with n in the legend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation

from flossrun.report.attractors import loss_landscape, orbit_diagram, smoothness
from flossrun.report.collect import Collection
from flossrun.report.conditions import (
    FLOSS_SETTING_KEYS,
    Conditions,
    as_floats,
    as_keys,
    finish,
    format_value,
    short_names,
    sort_key,
)
from flossrun.report.regions import regions
from flossrun.report.stats import counted, fisher_p, format_p, success_counts
from flossrun.report.style import LINESTYLES, RC, band, colours, label, new_figure, no_data, save

STAGES = ("initial", "preflossed", "eval", "final")


def declared_x(exp: Collection) -> str:
    """The config key a preset's figure plots against (its ``report.x``, e.g. ``task.delay``)."""
    x = exp.report_node().get("x")
    if not x:
        raise ValueError("report.x is not set; this figure plots against the config key it names")
    return str(x)


def select_metric(df: pd.DataFrame, phase: str, name: str) -> pd.DataFrame:
    return df[(df["phase"] == phase) & (df["name"] == name)]


def panel_values(cond: Conditions, key: str) -> list[Any]:
    """Sorted distinct values of a panel key; ``[None]`` (one panel) if it is not a config key."""
    if key not in cond.config.columns:
        return [None]
    return sorted(cond.config[key].drop_duplicates().tolist(), key=lambda v: sort_key([v]))


def on_panel(cond: Conditions, df: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    return df if value is None else df[cond.column(df, key) == value]


def panel_title(key: str, value: Any) -> str:
    return "" if value is None else f"{short_names([key])[key]}={format_value(value)}"


def axes_done(
    ax: Axes, x: str, ylabel: str, ticks=(), empty: str = "no data", legend: bool = True
) -> None:
    """Axis labels, ticks at ``ticks`` when they are a few integers (delays), and the legend
    (unless ``legend`` is false), or ``empty`` on a panel with no line."""
    ax.set(xlabel=label(x), ylabel=ylabel)
    v = sorted(set(pd.to_numeric(pd.Series(ticks), errors="coerce").dropna().tolist()))
    if 1 < len(v) <= 12 and all(float(a).is_integer() for a in v):
        ax.set_xticks(v, [str(int(a)) for a in v])
    if not ax.lines:
        no_data(ax, empty)
    elif legend:
        ax.legend()


def success_vs(
    ax: Axes, cond: Conditions, results: pd.DataFrame, x: str, legend: bool = True
) -> None:
    """Success rate vs ``x`` with 95 % Wilson bars (conditions shifted apart by a few points);
    the legend states n per point."""
    groups = list(cond.groups(counted(results)))
    for i, (name, colour, g) in enumerate(groups):
        rate = success_counts(g, [x])
        lo, hi = rate["n"].min(), rate["n"].max()
        n = f"{lo}" if lo == hi else f"{lo}–{hi}"
        err = [rate["rate"] - rate["ci_low"], rate["ci_high"] - rate["rate"]]
        shift = ScaledTranslation(
            (i - (len(groups) - 1) / 2) * 3 / 72, 0, ax.figure.dpi_scale_trans
        )
        bars = ax.errorbar(
            rate[x], rate["rate"], yerr=err, fmt="o-", color=colour, capsize=2,
            label=f"{name} (n={n} per point)",
        )  # fmt: skip
        for artist in bars.get_children():  # shifted after plotting: limits stay on the data
            artist.set_transform(ax.transData + shift)
    ax.set_ylim(-0.04, 1.04)
    axes_done(ax, x, f"{label('success')} (95 % CI)", results[x], legend=legend)


def epochs_to_success_vs(ax: Axes, cond: Conditions, results: pd.DataFrame, x: str) -> None:
    """Median (25–75 % bars) epochs to success vs ``x``, over the successful realizations."""
    done = counted(results)
    ok = done[done["success"].fillna(False).astype(bool)]
    for name, colour, g in cond.groups(ok):
        q = g.groupby(x)["epochs_to_success"].quantile([0.25, 0.5, 0.75]).unstack().dropna()
        if len(q):
            err = [q[0.5] - q[0.25], q[0.75] - q[0.5]]
            legend = f"{name} (n={len(g)} successful)"
            ax.errorbar(q.index, q[0.5], yerr=err, fmt="o-", color=colour, capsize=2, label=legend)
    axes_done(ax, x, label("epochs_to_success"), results[x], "no successful realization")


def curve_vs_epoch(ax: Axes, cond: Conditions, curves: pd.DataFrame, ylabel: str) -> None:
    """Median and 25–75 % band over realizations of one metric vs epoch, thin single runs."""
    for name, colour, g in cond.groups(curves):
        n = len(g[["run", "realization"]].drop_duplicates())
        band(ax, g, "epoch", color=colour, label=cond.legend(name, n), lines=True)
    ax.set(xlabel=label("epoch"), ylabel=ylabel)
    if not ax.lines:
        no_data(ax)


def lyapunov_control(exp: Collection) -> Figure | None:
    """λ_1 (nats/step) vs flossing epoch, one colour per target λ*, targets dashed (claim 1)."""
    lam = select_metric(exp.curves, "prefloss", "lambda_1_floss")
    if lam.empty:
        return None
    cond = Conditions.of(exp)
    fig, axes = new_figure(width=5.0, height=3.6)
    ax = axes[0, 0]
    for name, colour, g in cond.groups(lam):
        band(ax, g, "epoch", color=colour, label=cond.legend(name), lines=True)
        for target in {t for v in cond.values(name, "floss.target") for t in as_floats(v)}:
            ax.axhline(target, color=colour, ls="--", lw=1)
    ax.set(xlabel=label("floss_epoch"), ylabel=label("lambda_1"))
    ax.legend()
    what = r"Gradient flossing drives $\lambda_1$ to its target $\lambda^*$ (dashed)"
    return finish(fig, cond, what, keys=FLOSS_SETTING_KEYS)


def spectrum_k(exp: Collection) -> Figure | None:
    """Lyapunov spectrum λ_i vs i before (dashed) and after (solid) flossing k exponents."""
    sp = exp.spectra
    if sp.empty or not (sp["stage"] == "initial").any():
        return None
    after = "preflossed" if (sp["stage"] == "preflossed").any() else "final"
    cond = Conditions.of(exp)
    fig, axes = new_figure(width=5.4, height=3.8)
    ax = axes[0, 0]
    for name, colour, g in cond.groups(sp):
        band(ax, g[g["stage"] == "initial"], "index", color=colour, ls="--", lw=1)
        band(ax, g[g["stage"] == after], "index", color=colour, label=cond.legend(name))
        for k in {k for v in cond.values(name, "floss.k") for k in as_floats(v)}:
            ax.axvline(k, color=colour, ls=":", lw=1)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set(xlabel=label("index"), ylabel=label("lambda_i"))
    proxies = [Line2D([], [], color="0.3", ls="--", lw=1), Line2D([], [], color="0.3")]
    ax.add_artist(ax.legend(proxies, ["initial", f"after flossing ({after})"], loc="lower left"))
    ax.legend(loc="center right")
    what = "Lyapunov spectrum before and after flossing the first $k$ exponents (dotted)"
    return finish(fig, cond, what, keys=FLOSS_SETTING_KEYS)


def jacobian(exp: Collection) -> Figure | None:
    """Long-term Jacobian ∂h_t/∂h_{t−τ} vs lag τ: log10 condition number, ln σ_i, error signal."""
    d = exp.diagnostics
    if d.empty:
        return None
    cond = Conditions.of(exp)
    labels = d["run"].map(cond.by_run)
    pairs = sorted(  # conditions in their order, then stages in the order a run writes them
        set(zip(labels, d["stage"], strict=True)),
        key=lambda p: (cond.order.index(p[0]), (*STAGES, p[1]).index(p[1]), p[1]),
    )
    single = len(cond.order) <= 1
    d = d.assign(series=d["stage"] if single else labels + ", " + d["stage"])
    order = [stage if single else f"{c}, {stage}" for c, stage in pairs]
    palette = colours(order)
    fig, axes = new_figure(3, width=4.0, height=3.4)
    kappa = d[d["name"] == "log10_condition"]
    ks = sorted(kappa["index"].unique())  # show at most 4 of the recorded k, spread out
    ks = [ks[i] for i in sorted({round(j) for j in np.linspace(0, len(ks) - 1, 4)})] if ks else []
    for series in order:
        for k, ls in zip(ks, LINESTYLES, strict=False):
            rows = kappa[(kappa["series"] == series) & (kappa["index"] == k)]
            band(axes[0, 0], rows, "lag", color=palette[series], ls=ls)
        sv = d[(d["series"] == series) & (d["name"] == "log_singular_value")]
        med = sv.groupby(["index", "lag"])["value"].median()
        for i in med.index.get_level_values(0).unique():
            axes[0, 1].plot(
                med[i].index, med[i].to_numpy(), color=palette[series], lw=0.6, alpha=0.6
            )
        err = d[(d["series"] == series) & (d["name"] == "error_signal_norm")]
        band(axes[0, 2], err, "lag", color=palette[series], label=series)
    if len(ks):
        proxies = [Line2D([], [], color="0.3", ls=ls) for ls in LINESTYLES[: len(ks)]]
        axes[0, 0].legend(proxies, [f"k={format_value(float(k))}" for k in ks])
    axes[0, 0].set(xlabel=label("lag"), ylabel=label("log10_condition"), title="condition number")
    axes[0, 1].set(xlabel=label("lag"), ylabel=label("log_singular_value"), title="singular values")
    axes[0, 2].set(xlabel=label("lag"), ylabel=label("error_signal_norm"), title="error signal")
    if axes[0, 2].lines:
        axes[0, 2].set_yscale("log")
        axes[0, 2].legend()
    for ax in axes[0]:
        if not ax.lines:
            no_data(ax)
    what = r"Long-term Jacobian $\partial h_t/\partial h_{t-\tau}$, flossed and unflossed"
    return finish(fig, cond, what)


def _delay_rows(exp: Collection, ncols: int, phase: str, metric: str):
    """The delay presets' rows, one per task: success vs the delay and ``metric`` vs epoch at
    the longest; returns ``fig, cond, x, [(row axes, the task's results, its title)]``."""
    x = declared_x(exp)
    cond = Conditions.of(exp, fixed=(x, "task.name"))
    tasks = panel_values(cond, "task.name")
    fig, axes = new_figure(ncols, nrows=len(tasks))
    curves_all = select_metric(exp.curves, phase, metric)
    rows = []
    for row, task in zip(axes, tasks, strict=True):
        results = on_panel(cond, exp.results, "task.name", task)
        success_vs(row[0], cond, results, x)
        longest = results[x].max() if len(results) else None
        curves = curves_all[cond.column(curves_all, x) == longest]
        curve_vs_epoch(row[1], cond, on_panel(cond, curves, "task.name", task), label(metric))
        name = panel_title("task.name", task)
        row[0].set_title(f"{name} success".strip())
        row[1].set_title(f"{name} {short_names([x])[x]}={format_value(longest)}".strip())
        rows.append((row, results, name))
    return fig, cond, x, rows


def preflossing(exp: Collection) -> Figure | None:
    """Per task: success rate vs d, test accuracy vs epoch at the longest d, epochs to success."""
    fig, cond, x, rows = _delay_rows(exp, 3, "eval", "test_accuracy")
    for row, results, name in rows:
        epochs_to_success_vs(row[2], cond, results, x)
        row[2].set_title(f"{name} speed".strip())
        for ax in (row[0], row[2]):  # below the panel: a legend inside covers a curve
            if ax.get_legend() is not None:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    return finish(fig, cond, "Preflossing: success and speed of training vs delay", skip=(x,))


def during_training(exp: Collection) -> Figure | None:
    """Success rate vs d (none / pre / pre_during) and ‖∂L/∂h0‖ vs epoch at the longest d."""
    fig, cond, x, rows = _delay_rows(exp, 2, "train", "grad_h0_norm")
    for row, _, _ in rows:
        if row[1].lines:
            row[1].set_yscale("log")
    return finish(fig, cond, "Flossing during training extends the delay bridged", skip=(x,))


def _accuracy_vs(ax, cond: Conditions, results: pd.DataFrame, x: str) -> None:
    """Final test accuracy vs ``x`` per condition: median, 25–75 % band, single realizations."""
    for name, colour, g in cond.groups(results):
        ax.scatter(g[x], g["test_accuracy"], color=colour, s=9, alpha=0.4, lw=0)
        band(ax, g, x, "test_accuracy", color=colour, label=cond.legend(name), marker="o")
    axes_done(ax, x, f"{label('final_accuracy')} (median, 25–75 %)")


def _exponents_vs_k(ax, cond: Conditions, spectra: pd.DataFrame, x: str) -> None:
    """λ1 (solid) and λ_k (dashed) after preflossing and λ1 at initialisation (dotted) vs k, per
    condition: tells networks that did not floss from those that flossed but did not train."""
    if spectra.empty:
        no_data(ax)
        return
    sp = spectra.assign(_k=pd.to_numeric(cond.column(spectra, x), errors="coerce"))
    sp = sp[sp["_k"] > 0]
    for _, colour, g in cond.groups(sp):
        flossed = g[g["stage"] == "preflossed"]
        band(ax, g[(g["stage"] == "initial") & (g["index"] == 1)], "_k", color=colour, ls=":")
        band(ax, flossed[flossed["index"] == 1], "_k", color=colour, marker="o")
        band(ax, flossed[flossed["index"] == flossed["_k"]], "_k", color=colour, ls="--")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set(xlabel=label(x), ylabel=f"{label('lambda_i')} (median, 25–75 %)")
    if not ax.lines:
        no_data(ax, "no preflossed spectrum")
        return
    styles = (("-", "λ1 after preflossing"), ("--", "λk after preflossing"), (":", "λ1 initial"))
    proxies = [Line2D([], [], color="0.3", ls=ls) for ls, _ in styles]
    ax.legend(proxies, [text for _, text in styles])


def _k_axes(axes, ks: pd.Series) -> None:
    """k in numeric order on a symlog axis (ticks at the k swept) when it spans beyond 10."""
    ks = sorted(pd.to_numeric(ks, errors="coerce").dropna().unique())
    if not ks or ks[0] < 0 or ks[-1] <= 10:
        return
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=-0.3, right=ks[-1] * 1.3)
        ax.set_xticks(ks, [format_value(float(k)) for k in ks])


def k_sweep(exp: Collection) -> Figure | None:
    """The k × S grid, one colour per channels S (and delay d): success rate, final accuracy
    and λ1, λk after preflossing vs k."""
    x = declared_x(exp)
    cond = Conditions.of(exp, fixed=(x,))
    res = counted(exp.results)
    fig, axes = new_figure(3)
    success_vs(axes[0, 0], cond, res, x)
    _accuracy_vs(axes[0, 1], cond, res, x)
    _exponents_vs_k(axes[0, 2], cond, exp.spectra, x)
    axes[0, 0].set_title("success")
    axes[0, 1].set_title("final accuracy")
    axes[0, 2].set_title("exponents after preflossing")
    if res[x].notna().all():
        _k_axes(axes[0], res[x])
    return finish(fig, cond, "More flossed exponents k for tasks with more memory", skip=(x,))


def _success_panels(
    exp: Collection, panel: str, what: str, spectra: bool = False, p_values: bool = False
) -> Figure:
    """Success rate vs d, one column per value of ``panel``; with ``spectra`` the spectrum at
    initialisation (dashed) and after preflossing (solid) below; with ``p_values`` Fisher's p
    of pre vs none in each panel (:func:`flossing_p_values`) and one legend below all."""
    x = declared_x(exp)
    cond = Conditions.of(exp, fixed=(x, panel))
    values = panel_values(cond, panel)
    fig, axes = new_figure(len(values), 2 if spectra else 1, width=3.6)
    for col, value in enumerate(values):
        results = on_panel(cond, exp.results, panel, value)
        success_vs(axes[0, col], cond, results, x, legend=not p_values)
        axes[0, col].set_title(panel_title(panel, value))
        lines = flossing_p_values(results, x) if p_values else []
        if lines:
            text = "pre vs none (Fisher):\n" + "\n".join(lines)
            axes[0, col].text(0.98, 0.97, text, transform=axes[0, col].transAxes, ha="right",
                              va="top", fontsize=6,
                              bbox={"facecolor": "white", "alpha": 0.85, "lw": 0})  # fmt: skip
        if not spectra:
            continue
        ax, sp = axes[1, col], exp.spectra
        for name, colour, g in cond.groups(on_panel(cond, sp, panel, value)) if len(sp) else ():
            band(ax, g[g["stage"] == "initial"], "index", color=colour, ls="--", lw=1)
            band(ax, g[g["stage"] == "preflossed"], "index", color=colour, label=cond.legend(name))
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set(xlabel=label("index"), ylabel=label("lambda_i"))
        if not ax.lines:
            no_data(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if p_values and handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)))
    return finish(fig, cond, what, skip=(x, panel))


def temporal_complexity(exp: Collection) -> Figure | None:
    """Success vs d for temporal XOR with m taps, one panel per m, none vs pre."""
    return _success_panels(exp, "task.taps", "Tasks of varying temporal complexity")


def flossing_p_values(results: pd.DataFrame, x: str) -> list[str]:
    """Per task and ``x`` where both ran: ``xor d=12: 9/10 vs 1/10, p=0.0011`` (successes of
    ``floss=pre`` vs ``none``, Fisher's exact p)."""
    table = success_counts(results, ["task.name", x, "floss.name"])
    lines = []
    for (task, d), g in table.groupby(["task.name", x], sort=False):
        by = g.set_index("floss.name")
        if {"none", "pre"} <= set(by.index):
            (a, n), (b, m) = (by.loc[f, ["successes", "n"]] for f in ("none", "pre"))
            p = format_p(fisher_p(int(b), int(m), int(a), int(n)))
            name = str(task).removeprefix("delayed_")
            lines.append(f"{name} d={format_value(d)}: {b}/{m} vs {a}/{n}, p={p}")
    return lines


def architectures(exp: Collection) -> Figure | None:
    """Per architecture: success vs d with Fisher's p of pre vs none, and the spectra."""
    what = "Flossing across RNN architectures: success vs delay; spectra before (dashed) and "
    return _success_panels(
        exp, "model.name", what + "after (solid) preflossing", spectra=True, p_values=True
    )


def generic(exp: Collection) -> Figure | None:
    """Fallback: test accuracy and λ_1 (eval, else flossing) vs epoch per condition."""
    acc = select_metric(exp.curves, "eval", "test_accuracy")
    lam = select_metric(exp.curves, "eval", "lambda_1_eval")
    lam_x = "epoch"
    if lam.empty:
        lam, lam_x = select_metric(exp.curves, "prefloss", "lambda_1_floss"), "floss_epoch"
    if acc.empty and lam.empty:
        return None
    cond = Conditions.of(exp)
    fig, axes = new_figure(2)
    curve_vs_epoch(axes[0, 0], cond, acc, label("test_accuracy"))
    curve_vs_epoch(axes[0, 1], cond, lam, label("lambda_1"))
    axes[0, 1].set_xlabel(label(lam_x))
    if axes[0, 0].lines:  # below both panels: long or many labels never squeeze the axes
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return finish(fig, cond, f"{exp.experiments[0]}: learning curves")


FIGURES: dict[str, Callable[[Collection], Figure | None]] = {
    f.__name__: f
    for f in (
        lyapunov_control, spectrum_k, jacobian, preflossing, during_training, k_sweep,
        temporal_complexity, architectures, orbit_diagram, loss_landscape, smoothness, regions,
        generic,
    )
}  # fmt: skip


def render_figures(collection: Collection, directory: Path) -> tuple[list[Path], list[str]]:
    """Draw each experiment's ``report.figures`` into ``directory`` as ``<figure>.png/.pdf``
    (``<experiment>_<figure>`` when the names differ); returns the files written and notes on
    figures skipped or failed (a figure that raises is a note, never propagated)."""
    written: list[Path] = []
    notes: list[str] = []
    for experiment in collection.experiments:
        exp = collection.subset(experiment)
        if exp.runs.empty:
            notes.append(f"{experiment}: no finished runs, no figures")
            continue
        # the preset's report.figures (a preset-named run that recorded none: its preset file's)
        for name in as_keys(collection.settings[experiment].get("figures")) or ["generic"]:
            draw = FIGURES.get(name)
            if draw is None:
                notes.append(f"{experiment}: unknown figure {name!r} (known: {', '.join(FIGURES)})")
                continue
            stem = name if name == experiment else f"{experiment}_{name}"
            try:
                with mpl.rc_context(RC):
                    fig = draw(exp)
                    if fig is None:
                        notes.append(f"{experiment}: figure {name!r} skipped, no data for it")
                        continue
                    written += save(fig, directory, stem)
            except Exception as e:  # one broken figure must not cost the others
                notes.append(f"{experiment}: figure {name!r} failed: {type(e).__name__}: {e}")
    return written, notes
