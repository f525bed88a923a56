"""Panels shared by the preset figures: data selection, success-rate and learning-curve axes.

Every function draws on one matplotlib ``Axes`` from tidy frames, with the colours, legend
entries (n = pooled realizations) and axis labels of :class:`Conditions`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from flossrun.report.collect import Collection
from flossrun.report.conditions import SETTING_KEYS, Conditions, format_value, short_names, sort_key
from flossrun.report.stats import counted, success_counts
from flossrun.report.style import band, label, no_data


def select_metric(df: pd.DataFrame, phase: str, name: str, column: str = "phase") -> pd.DataFrame:
    return df[(df[column] == phase) & (df["name"] == name)] if len(df) else df


def as_floats(value: Any) -> list[float]:
    """A number, or a JSON list of numbers (``floss.target``), as floats; junk → []."""
    try:
        loaded = json.loads(value) if isinstance(value, str) else value
        return [float(v) for v in (loaded if isinstance(loaded, list) else [loaded])]
    except (TypeError, ValueError):
        return []


def preset_settings(exp: Collection) -> dict[str, Any]:
    return exp.settings.get(exp.experiments[0], {}) if exp.experiments else {}


def panel_values(cond: Conditions, key: str) -> list[Any]:
    """Sorted distinct values of a panel key; ``[None]`` (one panel) if it is not a config key."""
    if key not in cond.config.columns:
        return [None]
    return sorted(cond.config[key].drop_duplicates().tolist(), key=lambda v: sort_key([v]))


def on_panel(cond: Conditions, df: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    return df if value is None else df[cond.column(df, key) == value]


def panel_title(key: str, value: Any) -> str:
    return "" if value is None else f"{short_names([key])[key]}={format_value(value)}"


def finish(
    fig: Figure,
    cond: Conditions,
    what: str,
    skip: tuple[str, ...] = (),
    keys: Sequence[str] = SETTING_KEYS,
) -> Figure:
    """Title: what the figure shows, then the settings shared by all its runs (wrapped)."""
    setting = cond.setting(skip=(*cond.keys, *skip), keys=keys)
    width = max(30, int(fig.get_figwidth() * 72 / 4.9))  # characters per line at 9 pt
    fig.suptitle(f"{textwrap.fill(what, width)}\n{textwrap.fill(setting, width)}", fontsize=9)
    return fig


def data_ticks(ax: Axes, values: pd.Series) -> None:
    """Ticks at the values of ``x`` (a few integers, e.g. delays): never 12.5 or 17.5."""
    v = sorted(set(pd.to_numeric(values, errors="coerce").dropna().tolist()))
    if 1 < len(v) <= 12 and all(float(a).is_integer() for a in v):
        ax.set_xticks(v, [str(int(a)) for a in v])


def success_vs(ax: Axes, cond: Conditions, results: pd.DataFrame, x: str) -> None:
    """Success rate (fraction of realizations with final accuracy ≥ threshold) vs ``x``, with
    95 % Wilson intervals as error bars (conditions shifted apart by a few points so their bars
    do not hide each other); the legend states n per point."""
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
    ax.set(xlabel=label(x), ylabel=f"{label('success')} (95 % CI)", ylim=(-0.04, 1.04))
    data_ticks(ax, results[x])
    if ax.lines:
        ax.legend()
    else:
        no_data(ax)


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
    ax.set(xlabel=label(x), ylabel=label("epochs_to_success"))
    data_ticks(ax, results[x])
    if ax.lines:
        ax.legend()
    else:
        no_data(ax, "no successful realization")


def curve_vs_epoch(ax: Axes, cond: Conditions, curves: pd.DataFrame, ylabel: str) -> None:
    """Median and 25–75 % band over realizations of one metric vs epoch, thin single runs."""
    for name, colour, g in cond.groups(curves):
        n = len(g[["run", "realization"]].drop_duplicates())
        band(
            ax,
            g,
            "epoch",
            color=colour,
            label=cond.legend(name, n),
            lines_by=["run", "realization"],
        )
    ax.set(xlabel=label("epoch"), ylabel=ylabel)
    if not ax.lines:
        no_data(ax)
