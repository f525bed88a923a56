"""Conditions (docs/design.md §6–7): the config keys that tell an experiment's networks apart
(those the preset declares that vary, then any other network-identity key that still does:
:func:`condition_keys`), their labels, and per-condition statistics.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure

from flossrun.analyses import analysis_trains
from flossrun.contract import in_network_identity
from flossrun.report.stats import counted, quartiles, success_counts
from flossrun.report.style import colours

if TYPE_CHECKING:
    from flossrun.report.collect import Collection


def identity_columns(columns: Iterable[str]) -> list[str]:
    """The flattened config keys that define a network together with its seed."""
    return [c for c in columns if in_network_identity(c)]


def as_keys(value: Any) -> list[str]:
    """A dotted key or a list of them (``report.condition``) as a list of strings."""
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value or ()]


def _varies(config: pd.DataFrame, key: str, within: Sequence[str]) -> bool:
    values = config[key].astype(str)
    if not within:
        return values.nunique() > 1
    return bool((values.groupby([config[k].astype(str) for k in within]).nunique() > 1).any())


def condition_keys(config: pd.DataFrame, declared: Sequence[str] = ()) -> list[str]:
    """The keys that label one experiment's conditions (``config``: one row per run): the
    ``declared`` keys that vary, then any identity key that still varies within their groups
    (``*.name`` keys first)."""
    identity = identity_columns(config.columns)
    keys = [k for k in dict.fromkeys(declared) if k in identity and _varies(config, k, ())]
    rest = [k for k in identity if k not in keys]
    for key in sorted(rest, key=lambda k: not k.endswith(".name")):
        if _varies(config, key, keys):
            keys.append(key)
    return keys


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Legend names: ``floss.name`` → ``floss``, ``floss.k`` → ``k`` (full key if ambiguous)."""
    parts = {k: k.split(".") for k in keys}
    short = {k: (p[-2] if p[-1] == "name" and len(p) > 1 else p[-1]) for k, p in parts.items()}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {k: (k if s in clash else s) for k, s in short.items()}


def format_value(value: Any) -> str:
    """``40.0`` → ``40``, ``0.5`` → ``0.5``, NaN → ``?``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def as_floats(value: Any) -> list[float]:
    """A number, or a JSON list of numbers (``floss.target``), as floats; junk → []."""
    try:
        loaded = json.loads(value) if isinstance(value, str) else value
        return [float(v) for v in (loaded if isinstance(loaded, list) else [loaded])]
    except (TypeError, ValueError):
        return []


def sort_key(values: Iterable[Any]) -> tuple:
    """Orders numbers numerically (also numeric strings), then text, then missing values."""
    out = []
    for v in values:
        try:
            number = float(v)
            out.append((0, number, "") if not math.isnan(number) else (2, 0.0, ""))
        except (TypeError, ValueError):
            out.append((1, 0.0, str(v)))
    return tuple(out)


def setting_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``floss=pre, delay=40`` for config keys and their values."""
    names = short_names(keys)
    return ", ".join(f"{names[k]}={format_value(v)}" for k, v in zip(keys, values, strict=True))


def label_conditions(config: pd.DataFrame, keys: Sequence[str], default: str = "all"):
    """``(labels, order)``: a label per row (``floss=pre, delay=40``, a Series aligned with
    ``config``) and the labels in sorted condition order."""
    values = [tuple(row) for row in config[list(keys)].itertuples(index=False)]
    text = {v: setting_label(keys, v) for v in values}
    if not keys:
        text = {v: default for v in values}
    order = [text[v] for v in sorted(set(values), key=sort_key)]
    return pd.Series([text[v] for v in values], index=config.index, dtype=object), order


def trained(results: pd.DataFrame) -> pd.Series:
    """Per row: the job trained its networks for the task (``train.epochs > 0``, and its
    analysis trains: :func:`flossrun.analyses.analysis_trains` of the row's ``analysis.*``
    values), so success and accuracy describe something it did."""
    epochs = pd.to_numeric(results.get("train.epochs", pd.Series(1, index=results.index)))
    keys = [c for c in results.columns if c.startswith("analysis.")]
    fields = results[keys].rename(columns=lambda c: c.removeprefix("analysis."))
    seen: dict[str, bool] = {}  # one answer per distinct analysis config
    trains = []
    for row in fields.to_dict("records"):
        present = {k: v for k, v in row.items() if not pd.api.types.is_scalar(v) or pd.notna(v)}
        key = repr(sorted(present.items()))
        if key not in seen:
            seen[key] = analysis_trains(present)
        trains.append(seen[key])
    return (epochs.fillna(1) > 0) & pd.Series(trains, index=results.index, dtype=bool)


NO_RATE = {
    "successes": 0,
    "rate": math.nan,
    "ci_low": math.nan,
    "ci_high": math.nan,
}  # none counted


def condition_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and condition, in the order of ``results``: runs, ``problem_runs``,
    counted realizations ``n``, successes with their 95 % Wilson interval, medians with 25–75 %
    ranges (``epochs_to_success`` over the successful ones), code versions, ``trained``."""
    by = ["experiment", "condition"]
    rates = success_counts(results, by).set_index(by)
    rows = []
    for (exp, cond), g in results.groupby(by, sort=False):
        done, used = g[g["status"] == "finished"], counted(g)
        rate = rates.loc[(exp, cond)] if (exp, cond) in rates.index else NO_RATE
        row = {
            "experiment": exp,
            "condition": cond,
            "trained": bool(trained(g).any()),
            "runs": g["run"].nunique(),
            "problem_runs": g.loc[g["status"] != "finished", "run"].nunique(),
            "n": len(used),
            "duplicates": len(done) - len(used),
            "successes": int(rate["successes"]),
            "success_rate": rate["rate"],
            "success_ci_low": rate["ci_low"],
            "success_ci_high": rate["ci_high"],
        }
        ok = used[used["success"].fillna(False).astype(bool)]
        for col in ("test_accuracy", "test_loss", "lambda_1", "epochs_to_success"):
            q25, q50, q75 = quartiles((ok if col == "epochs_to_success" else used)[col])
            row |= {f"{col}_median": q50, f"{col}_q25": q25, f"{col}_q75": q75}
        row["code_versions"] = "; ".join(sorted(used["code"].dropna().unique()))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["experiment", "condition"])


SETTING_KEYS = (
    "task.name", "task.delay", "task.taps", "task.channels", "model.name", "model.N", "model.g",
    "floss.name", "floss.k", "floss.target",
)  # fmt: skip
FLOSS_SETTING_KEYS = (
    "model.name", "model.N", "model.g", "floss.k", "floss.target", "floss.batch", "floss.steps",
)  # fmt: skip


@dataclass
class Conditions:
    """The colour conditions of one experiment's figure: the preset's ``report.condition`` (else
    its condition keys) less the figure's axes and panels ``fixed``; labels, colours, n."""

    keys: list[str]
    config: pd.DataFrame  # flattened config indexed by run
    by_run: pd.Series  # run → condition label
    order: list[str]
    colour: dict[str, str]
    n: dict[str, int]  # finished realizations per condition

    @classmethod
    def of(cls, exp: Collection, fixed: Sequence[str] = ()) -> Conditions:
        """Conditions of ``exp`` (a :meth:`Collection.subset` of one experiment)."""
        name = exp.experiments[0] if exp.experiments else ""
        config = exp.config()
        explicit = as_keys(exp.report_node().get("condition"))
        keys = [k for k in explicit if k in config.columns and k not in fixed]
        if not keys:
            keys = [k for k in exp.cell_keys.get(name, []) if k not in fixed]
        by_run, order = label_conditions(config, keys, default=str(name))
        n = counted(exp.results)["run"].map(by_run).value_counts().to_dict()
        return cls(keys, config, by_run, order, colours(order), n)

    def groups(self, df: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
        """``(label, colour, rows)`` per condition present in ``df``, in sorted order."""
        labels = df["run"].map(self.by_run)
        for name in self.order:
            rows = df[labels == name]
            if len(rows):
                yield name, self.colour[name], rows

    def legend(self, name: str, n: int | None = None) -> str:
        """Legend entry with the number of realizations pooled in it."""
        return f"{name} (n={self.n.get(name, 0) if n is None else n})"

    def column(self, df: pd.DataFrame, key: str) -> pd.Series:
        """A config key's value on every row of ``df`` (looked up by ``run``)."""
        return df["run"].map(self.config[key])

    def values(self, name: str, key: str) -> list[Any]:
        """Distinct values of a config key among the runs of condition ``name``."""
        return self.config.loc[self.by_run == name, key].drop_duplicates().tolist()

    def setting(self, skip: Sequence[str] = (), keys: Sequence[str] = SETTING_KEYS) -> str:
        """The constant settings (``task=delayed_xor, N=80, k=75``) and the realization count."""
        keys = [k for k in keys if k in self.config.columns and k not in skip]
        keys = [k for k in keys if self.config[k].astype(str).nunique() == 1]
        keys = [k for k in keys if self.config[k].notna().all()]  # "g=?" would say nothing
        names = short_names(keys)
        parts = [f"{names[k]}={format_value(self.config[k].iloc[0])}" for k in keys]
        return ", ".join([*parts, f"{sum(self.n.values())} realizations"])


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
